import { ShardKeyError } from './cluster-errors';

/** A value that can be a shard key: an integer number, a bigint, or a string (UUIDs included). */
export type ShardKeyValue = number | bigint | string;

/**
 * The largest shard key: 1 KiB of canonical UTF-8 text. Keys are identifiers (a bigint has at most
 * 20 digits, a UUID 36 characters, an e-mail address 320), and PostgreSQL cannot index a value much
 * above 2.7 KB anyway; the bound keeps a hostile key from costing seconds of CPU (a 1 MB integer
 * text takes ~0.5 s to parse) before it is refused. Longer keys are refused at once, before any
 * parsing or hashing.
 */
export const MAX_SHARD_KEY_BYTES = 1024;

// A bigint at or beyond 10^1024 has more than 1024 digits; below 10^1023 it fits with its sign.
const BIGINT_LIMIT = 10n ** BigInt(MAX_SHARD_KEY_BYTES);
const BIGINT_SAFE = 10n ** BigInt(MAX_SHARD_KEY_BYTES - 1);

/** Refuses a string or bigint key longer than {@link MAX_SHARD_KEY_BYTES}, in time independent of its length. */
export function checkShardKeySize(value: unknown, where?: { table: string; column: string }): void {
  let over = false;
  if (typeof value === 'string') {
    // UTF-8 takes at least one byte per UTF-16 unit and at most three.
    over = value.length > MAX_SHARD_KEY_BYTES || (value.length * 3 > MAX_SHARD_KEY_BYTES && Buffer.byteLength(value, 'utf8') > MAX_SHARD_KEY_BYTES);
  } else if (typeof value === 'bigint') {
    const magnitude = value < 0n ? -value : value;
    over = magnitude >= BIGINT_SAFE && (magnitude >= BIGINT_LIMIT || magnitude.toString().length + (value < 0n ? 1 : 0) > MAX_SHARD_KEY_BYTES);
  }
  if (over) {
    throw new ShardKeyError(
      `Shard key${where === undefined ? '' : ` for ${where.table}.${where.column}`} is longer than ${MAX_SHARD_KEY_BYTES} bytes (MAX_SHARD_KEY_BYTES): a shard key is an identifier; hash or shorten longer values.`,
      { ...where, maxBytes: MAX_SHARD_KEY_BYTES },
    );
  }
}

/** The refusal of a literal key value that is not a key at all (null, an object, an array, a Date, a Buffer). */
export function invalidShardKeyValue(value: unknown, table: string, column: string): ShardKeyError {
  const type = value === null ? 'null' : Array.isArray(value) ? 'an array' : value instanceof Date ? 'a Date' : Buffer.isBuffer(value) ? 'a Buffer' : `of type ${typeof value}`;
  return new ShardKeyError(`Shard key for ${table}.${column} is ${type}, which is not a shard key: use an integer, a bigint or a string.`, { table, column, type });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The canonical text of a shard key (contract 1 of ARCHITECTURE.md): integers and bigints as
 * base-10 text without leading zeros, UUIDs lower-case with hyphens, other strings as they are.
 * `42`, `42n` and `'42'` encode the same. Anything else is refused with {@link ShardKeyError}.
 */
export function encodeShardKey(value: unknown): string {
  checkShardKeySize(value);
  switch (typeof value) {
    case 'string':
      return UUID.test(value) ? value.toLowerCase() : value;
    case 'bigint':
      return value.toString(10);
    case 'number':
      if (Number.isSafeInteger(value)) return Object.is(value, -0) ? '0' : value.toString(10);
      throw new ShardKeyError(
        Number.isInteger(value)
          ? `Shard key ${value} is an integer beyond 2^53 that a JavaScript number cannot hold exactly: pass it as a bigint or a string.`
          : `Shard key ${String(value)} is not an integer: use an integer, a bigint or a string.`,
        { value: String(value) },
      );
    default:
      throw new ShardKeyError(
        `Shard key of type ${value === null ? 'null' : typeof value} cannot be encoded: use an integer, a bigint or a string.`,
        { type: value === null ? 'null' : typeof value },
      );
  }
}

const INTEGER_TEXT = /^\s*[+-]?\d+\s*$/;

/** A key of an integer column: integer text (`'05'`, `' 5'`, `'+5'`) is read as PostgreSQL reads it. */
export function canonicalIntegerKey(value: unknown, table: string, column: string): unknown {
  checkShardKeySize(value, { table, column });
  if (typeof value === 'string') {
    if (!INTEGER_TEXT.test(value)) {
      throw new ShardKeyError(`Shard key ${JSON.stringify(value)} for ${table}.${column} is not an integer.`, { table, column });
    }
    return BigInt(value.trim());
  }
  return value;
}

const UUID_TEXT = /^\{?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})\}?$/i;

/** A key of a uuid column: any spelling PostgreSQL accepts for a UUID becomes lower-case with hyphens. */
export function canonicalUuidKey(value: unknown, table: string, column: string): unknown {
  checkShardKeySize(value, { table, column });
  const match = typeof value === 'string' ? UUID_TEXT.exec(value.trim()) : null;
  if (match === null) throw new ShardKeyError(`Shard key ${JSON.stringify(String(value))} for ${table}.${column} is not a UUID.`, { table, column });
  return match.slice(1).join('-').toLowerCase();
}
