/**
 * Compares and keys values the way PostgreSQL does, so rows merged from several shards sort and
 * group as they would in one database. node-postgres returns `bigint` and `numeric` as strings,
 * which are indistinguishable from text by value alone, so the plan asks each shard for
 * `pg_typeof(expr)::text` beside every value it must compare, and the class of that type decides.
 *
 * Text is compared in code-point order, which is PostgreSQL's order under the `C`, `C.UTF-8`
 * and `POSIX` collations (byte order of UTF-8). Other collations need a `compareText` of their own;
 * the merge also checks that each shard's rows arrive in the order this comparator expects and
 * fails loudly when they don't, so a collation mismatch cannot silently misorder rows.
 *
 * @packageDocumentation
 */
import { ErrorCodes } from '../../kernel/errors';
import { RoutingError } from '../sharding-errors';
import { canonicalDecimal, compareDecimal, parseDecimal } from './scatter-decimal';

/** How values of one column compare; derived from the PostgreSQL type name. */
export type ValueClass = 'number' | 'text' | 'bpchar' | 'boolean' | 'temporal' | 'bytes' | 'other';

/** Compares two strings of the same collation; negative, zero or positive. */
export type TextComparator = (a: string, b: string) => number;

const TYPE_CLASSES: Readonly<Record<string, ValueClass>> = Object.freeze({
  smallint: 'number',
  integer: 'number',
  bigint: 'number',
  numeric: 'number',
  real: 'number',
  'double precision': 'number',
  oid: 'number',
  text: 'text',
  'character varying': 'text',
  name: 'text',
  '"char"': 'text',
  uuid: 'text',
  'time without time zone': 'text',
  character: 'bpchar',
  boolean: 'boolean',
  date: 'temporal',
  'timestamp without time zone': 'temporal',
  'timestamp with time zone': 'temporal',
  bytea: 'bytes',
});

/** The value class of a `pg_typeof(...)::text` result; unknown types are `other`. */
export function valueClassOf(typeName: string): ValueClass {
  return TYPE_CLASSES[typeName] ?? 'other';
}

/** Maps UTF-16 code units so that comparing them orders strings by code point (surrogates above U+FFFF). */
function codePointRank(unit: number): number {
  return unit >= 0xe000 ? unit - 0x800 : unit >= 0xd800 ? unit + 0x2000 : unit;
}

/** Code-point order: PostgreSQL's order of text under the C / C.UTF-8 / POSIX collations. */
export const compareCodePoints: TextComparator = (a, b) => {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
};

/** A RoutingError for a value the merge cannot compare exactly like PostgreSQL. */
export function incomparable(what: string): RoutingError {
  return new RoutingError(
    ErrorCodes.UNSUPPORTED_SCATTER,
    `Cannot merge this scatter query across shards: ${what}. ` +
      'Add the shard key to the query, or run it on one shard with withShard(id).',
    { unsupported: what },
  );
}

function compareNumbers(a: number, b: number): number {
  // PostgreSQL sorts NaN above every other float and treats -0 as 0.
  if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
  if (Number.isNaN(b)) return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function decimalOf(value: string, typeName: string): ReturnType<typeof parseDecimal> & object {
  const parsed = parseDecimal(value);
  if (parsed === undefined) throw incomparable(`the value ${JSON.stringify(value)} of type ${typeName} is not a number`);
  return parsed;
}

function temporalMillis(value: unknown, typeName: string): number {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'number') return value; // pg-types parses 'infinity' to ±Infinity
  throw incomparable(`values of type ${typeName} that are not parsed to Date cannot be ordered`);
}

/** A comparer of non-null values of one column, plus an equality key for GROUP BY and DISTINCT. */
export interface ValueComparer {
  /** Negative, zero or positive, like PostgreSQL's `<` / `=` / `>` for this type. Never called with null. */
  compare(a: unknown, b: unknown): number;
  /** A string that is equal for two values exactly when PostgreSQL considers them equal. */
  key(value: unknown): string;
}

/** Builds the comparer for values whose PostgreSQL type is `typeName`. */
export function valueComparer(typeName: string, compareText: TextComparator): ValueComparer {
  const valueClass = valueClassOf(typeName);
  const compareStrings = (a: string, b: string): number => {
    switch (valueClass) {
      case 'number':
        return compareDecimal(decimalOf(a, typeName), decimalOf(b, typeName));
      case 'text':
        return compareText(a, b);
      case 'bpchar':
        // character(n) ignores trailing blanks when comparing.
        return compareText(a.trimEnd(), b.trimEnd());
      case 'boolean':
      case 'temporal':
      case 'bytes':
      case 'other':
        throw incomparable(`text values of type ${typeName} cannot be ordered outside PostgreSQL`);
    }
  };
  return Object.freeze({
    compare(a: unknown, b: unknown): number {
      if (typeof a === 'string' && typeof b === 'string') return compareStrings(a, b);
      if (typeof a === 'number' && typeof b === 'number') return compareNumbers(a, b);
      if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
      if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
      if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return Buffer.compare(a, b);
      if (valueClass === 'temporal') return compareNumbers(temporalMillis(a, typeName), temporalMillis(b, typeName));
      if (valueClass === 'number' && isNumeric(a) && isNumeric(b)) {
        return compareDecimal(decimalOf(String(a), typeName), decimalOf(String(b), typeName));
      }
      throw incomparable(`values of type ${typeName} cannot be ordered outside PostgreSQL`);
    },
    key(value: unknown): string {
      return equalityKey(value, valueClass, typeName);
    },
  });
}

function isNumeric(value: unknown): value is number | bigint | string {
  return typeof value === 'number' || typeof value === 'bigint' || typeof value === 'string';
}

function equalityKey(value: unknown, valueClass: ValueClass, typeName: string): string {
  if (value === null || value === undefined) return '\u0000';
  switch (typeof value) {
    case 'number':
      return `f${value === 0 ? 0 : value}`;
    case 'bigint':
      return `d${value}`;
    case 'boolean':
      return `b${value}`;
    case 'string':
      if (valueClass === 'number') {
        const parsed = parseDecimal(value);
        return parsed === undefined ? `s${value}` : `d${canonicalDecimal(parsed)}`;
      }
      return `s${valueClass === 'bpchar' ? value.trimEnd() : value}`;
    default:
      break;
  }
  if (value instanceof Date) return `t${value.getTime()}`;
  if (Buffer.isBuffer(value)) return `x${value.toString('hex')}`;
  if (Array.isArray(value)) return `a${JSON.stringify(value)}`;
  throw incomparable(`values of type ${typeName} cannot be compared for equality outside PostgreSQL`);
}

/** Comparer for values known to be numbers (count, sum and avg results), whatever their JS form. */
export const NUMBER_COMPARER: ValueComparer = valueComparer('numeric', compareCodePoints);
