import type { PoolClientLike } from './server-pools';
import type { ServerSpec, Topology } from './topology';

/**
 * The SQL twin of the slot hash (contract 5): MurmurHash3 x86 32-bit, seed 0, over
 * `convert_to(key_text, 'UTF8')`, so PostgreSQL can select, index and fence the rows of a slot.
 * Arithmetic is done in bigint with 32-bit masks; products are split in 16-bit halves so that no
 * intermediate value exceeds 2^63. The functions that call the others keep the search_path they
 * were installed under (`SET search_path FROM CURRENT`), so a session whose search_path leaves out
 * their schema (an app role's own) can still call them qualified, from a trigger or a policy.
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
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
DECLARE
  h bigint := 0;
  k bigint;
  len int := length(data);
  tail int := len - (len % 4);
  i int := 0;
BEGIN
  WHILE i < tail LOOP
    k := get_byte(data, i)::bigint | (get_byte(data, i + 1)::bigint << 8)
       | (get_byte(data, i + 2)::bigint << 16) | (get_byte(data, i + 3)::bigint << 24);
    k := kysely_scale_mul32(kysely_scale_rotl32(kysely_scale_mul32(k, 3432918353), 15), 461845907);
    h := kysely_scale_rotl32(h # k, 13);
    h := (kysely_scale_mul32(h, 5) + 3864292196) & 4294967295;
    i := i + 4;
  END LOOP;
  k := 0;
  IF len % 4 >= 3 THEN k := k # (get_byte(data, tail + 2)::bigint << 16); END IF;
  IF len % 4 >= 2 THEN k := k # (get_byte(data, tail + 1)::bigint << 8); END IF;
  IF len % 4 >= 1 THEN
    k := k # get_byte(data, tail)::bigint;
    h := h # kysely_scale_mul32(kysely_scale_rotl32(kysely_scale_mul32(k, 3432918353), 15), 461845907);
  END IF;
  h := h # len;
  h := h # (h >> 16);
  h := kysely_scale_mul32(h, 2246822507);
  h := h # (h >> 13);
  h := kysely_scale_mul32(h, 3266489909);
  h := h # (h >> 16);
  RETURN h;
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
