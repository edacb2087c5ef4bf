import { ShardKeyError } from './cluster-errors';

/** A value that can be a shard key: an integer number, a bigint, or a string (UUIDs included). */
export type ShardKeyValue = number | bigint | string;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The canonical text of a shard key (contract 1 of ARCHITECTURE.md): integers and bigints as
 * base-10 text without leading zeros, UUIDs lower-case with hyphens, other strings as they are.
 * `42`, `42n` and `'42'` encode the same. Anything else is refused with {@link ShardKeyError}.
 */
export function encodeShardKey(value: unknown): string {
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
  const match = typeof value === 'string' ? UUID_TEXT.exec(value.trim()) : null;
  if (match === null) throw new ShardKeyError(`Shard key ${JSON.stringify(String(value))} for ${table}.${column} is not a UUID.`, { table, column });
  return match.slice(1).join('-').toLowerCase();
}
