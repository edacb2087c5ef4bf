import type { PoolClientLike } from './server-pools';
import type { ServerSpec, Topology } from './topology';

const MASK32 = '4294967295';
/** `a * b mod 2^32` for a, b < 2^32, in bigint: the product is split in 16-bit halves so that no intermediate value exceeds 2^63. */
const mul32 = (a: string, b: string): string => `((((${a}) & 65535) * ${b} + (((((${a}) >> 16) * ${b}) & 65535) << 16)) & ${MASK32})`;
/** 32-bit rotate left of x (< 2^32) by r. */
const rotl32 = (x: string, r: number): string => `((((${x}) << ${r}) & ${MASK32}) | ((${x}) >> ${32 - r}))`;
const C1 = '3432918353'; // 0xcc9e2d51
const C2 = '461845907'; // 0x1b873593
const mixBlock = (k: string): string => mul32(rotl32(mul32(k, C1), 15), C2);

/**
 * The SQL twin of the slot hash (contract 5): MurmurHash3 x86 32-bit, seed 0, over
 * `convert_to(key_text, 'UTF8')`, so PostgreSQL can select, index and fence the rows of a slot.
 * Arithmetic is done in bigint with 32-bit masks. `kysely_scale_murmur3` is written out as a few
 * long expressions (three statements per 4-byte block, four to finish) and calls no other
 * function: the capture trigger of a move runs it for every app write to the source, in a
 * transaction of its own, and PL/pgSQL sets up each statement's expression once per transaction,
 * so fewer statements is what makes it cheap: two to three times faster than the earlier loop of
 * helper calls (5.4 → 2.7 µs for a 6-byte key, 22 → 7 µs for a 31-byte key, in bulk on the test
 * cluster); an expression may repeat a sub-expression rather than spend a statement on it. The functions that call others keep the search_path
 * they were installed under (`SET search_path FROM CURRENT`), so a session whose search_path leaves
 * out their schema (an app role's own) can still call them qualified, from a trigger or a policy.
 * `kysely_scale_mul32` and `kysely_scale_rotl32` are no longer used by it and stay for
 * installations that call them.
 */
export const SLOT_FUNCTIONS_SQL = `
CREATE OR REPLACE FUNCTION kysely_scale_mul32(a bigint, b bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT (((a & 65535) * b) + ((((a >> 16) * b) & 65535) << 16)) & 4294967295
$$;

CREATE OR REPLACE FUNCTION kysely_scale_rotl32(x bigint, r int) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT (((x << r) & 4294967295) | (x >> (32 - r)))
$$;

CREATE OR REPLACE FUNCTION kysely_scale_murmur3(data bytea) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  h bigint := 0;
  k bigint;
  len int := length(data);
  tail int := len - (len % 4);
BEGIN
  FOR i IN 0 .. tail - 4 BY 4 LOOP
    k := ${mul32('get_byte(data, i)::bigint | (get_byte(data, i + 1)::bigint << 8) | (get_byte(data, i + 2)::bigint << 16) | (get_byte(data, i + 3)::bigint << 24)', C1)};
    k := ${mul32(rotl32('k', 15), C2)};
    h := (${mul32(rotl32('h # k', 13), '5')} + 3864292196) & ${MASK32};
  END LOOP;
  IF tail < len THEN
    k := get_byte(data, tail)::bigint
       | CASE WHEN len - tail >= 2 THEN get_byte(data, tail + 1)::bigint << 8 ELSE 0 END
       | CASE WHEN len - tail >= 3 THEN get_byte(data, tail + 2)::bigint << 16 ELSE 0 END;
    h := h # ${mixBlock('k')};
  END IF;
  h := (h # len) # ((h # len) >> 16);
  h := ${mul32('h', '2246822507')};
  h := h # (h >> 13);
  h := ${mul32('h', '3266489909')};
  RETURN h # (h >> 16);
END
$$;

-- UUID text is canonical in lower case (contract 1), as the TypeScript side encodes it.
CREATE OR REPLACE FUNCTION kysely_scale_slot(key text, slot_count int DEFAULT 4096) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
  SELECT (kysely_scale_murmur3(convert_to(
    CASE WHEN key ~ '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' THEN lower(key) ELSE key END,
    'UTF8')) % slot_count)::int
$$;

CREATE OR REPLACE FUNCTION kysely_scale_slot(key bigint, slot_count int DEFAULT 4096) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
  SELECT kysely_scale_slot(key::text, slot_count)
$$;

CREATE OR REPLACE FUNCTION kysely_scale_slot(key uuid, slot_count int DEFAULT 4096) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
  SELECT kysely_scale_slot(key::text, slot_count)
$$;
`;

/** Installs the slot functions on every shard's primary (idempotent). */
export async function installSlotFunctions(
  topology: Topology,
  acquire: (server: ServerSpec) => Promise<PoolClientLike>,
): Promise<void> {
  await Promise.all(
    topology.shards.map(async (shard) => {
      const client = await acquire(shard.primary);
      try {
        await client.query(SLOT_FUNCTIONS_SQL);
      } finally {
        client.release();
      }
    }),
  );
}
