/**
 * Compares and keys values the way PostgreSQL does, so rows merged from several shards sort, group
 * and de-duplicate as they would in one database. The merge never compares the values node-postgres
 * parsed: each shard returns `expr::text` beside every compared value, its row description gives
 * the value's type, and the type decides how that text is read (see scatter-pg-text). A type whose order or equality
 * cannot be reproduced exactly is refused with `E_UNSUPPORTED_SCATTER`, never merged approximately.
 *
 * Text is compared in code-point order, which is PostgreSQL's order under the `C`, `C.UTF-8`
 * and `POSIX` collations (byte order of UTF-8). Other collations need a `compareText` of their own;
 * the merge also checks that each shard's rows arrive in the order this comparator expects and
 * fails loudly when they don't, so a collation mismatch cannot silently misorder rows.
 *
 * @packageDocumentation
 */
import { canonicalDecimal, compareDecimal, decimalFromInteger, parseDecimal, type Decimal } from './scatter-decimal';
import {
  compareInet,
  compareScalars,
  compareTimeTz,
  incomparable,
  inetKey,
  intervalKey,
  parseArrayText,
  temporalKey,
  timeTzKey,
  type InetKey,
  type TimeTzKey,
} from './scatter-pg-text';

export { incomparable } from './scatter-pg-text';

/** How values of one column compare; derived from the PostgreSQL type name. */
export type ValueClass = 'number' | 'text' | 'codePoint' | 'bpchar' | 'boolean' | 'temporal' | 'timetz' | 'interval' | 'bytes' | 'inet' | 'other';

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
  // Types whose text output is fixed-format and sorts byte-wise exactly as PostgreSQL sorts the values.
  name: 'codePoint',
  uuid: 'codePoint',
  'time without time zone': 'codePoint',
  macaddr: 'codePoint',
  macaddr8: 'codePoint',
  bit: 'codePoint',
  'bit varying': 'codePoint',
  character: 'bpchar',
  boolean: 'boolean',
  date: 'temporal',
  'timestamp without time zone': 'temporal',
  'timestamp with time zone': 'temporal',
  'time with time zone': 'timetz',
  interval: 'interval',
  bytea: 'bytes',
  inet: 'inet',
  cidr: 'inet',
});

/** The value class of a type name (as `format_type` prints it); unknown types (enums, jsonb, …) are `other`. */
function valueClassOf(typeName: string): ValueClass {
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

/**
 * The exact order of one PostgreSQL type over the text it prints: `read` turns the text of a
 * non-null value into a key once, `compare` orders two keys like PostgreSQL's `<`/`=`/`>`, and
 * `equality` gives a string equal for two keys exactly when PostgreSQL's `=` holds.
 */
export interface ExactOrder<K = unknown> {
  read(text: string): K;
  compare(a: K, b: K): number;
  equality(key: K): string;
}

function order<K>(read: (text: string) => K, compare: (a: K, b: K) => number, equality: (key: K) => string): ExactOrder<K> {
  return Object.freeze({ read, compare, equality });
}

const ORDERS: { readonly [C in ValueClass]: (typeName: string, compareText: TextComparator) => ExactOrder } = Object.freeze({
  // Integers of up to 15 digits (most keys and counts) are read as exact JS numbers; anything else as a decimal.
  number: (typeName: string) =>
    order<number | Decimal>(
      (text) => (SMALL_INTEGER.test(text) ? Number(text) : (parseDecimal(text) ?? fail(`the ${typeName} value ${JSON.stringify(text)} is not a number`))),
      (a, b) => (typeof a === 'number' && typeof b === 'number' ? compareScalars(a, b) : compareDecimal(toDecimal(a), toDecimal(b))),
      (k) => (typeof k === 'number' ? String(k) : canonicalDecimal(k)),
    ),
  text: (_typeName: string, compareText: TextComparator) => order((text) => text, compareText, (text) => text),
  codePoint: () => order((text) => text, compareCodePoints, (text) => text),
  // character(n) ignores trailing blanks.
  bpchar: (_typeName: string, compareText: TextComparator) => order((text) => text.trimEnd(), compareText, (text) => text),
  boolean: (typeName: string) =>
    order(
      // `x::text` of a boolean is true/false; its output function (and array elements) print t/f.
      (text) => (text === 't' || text === 'true' ? 1 : text === 'f' || text === 'false' ? 0 : fail(`the ${typeName} value ${JSON.stringify(text)} is not a boolean`)),
      compareScalars,
      String,
    ),
  temporal: (typeName: string) => order((text) => temporalKey(text, typeName), compareScalars, String),
  timetz: () => order<TimeTzKey>(timeTzKey, compareTimeTz, (k) => `${k.utc}/${k.zone}`),
  interval: () => order(intervalKey, compareScalars, String),
  bytes: (typeName: string) =>
    order(
      (text) => (text.startsWith('\\x') ? text.slice(2).toLowerCase() : fail(`${typeName} output that is not hex (set bytea_output = hex)`)),
      compareCodePoints,
      (hex) => hex,
    ),
  inet: (typeName: string) => order<InetKey>((text) => inetKey(text, typeName), compareInet, (k) => `${k.family}/${k.bits}/${Buffer.from(k.bytes).toString('hex')}`),
  other: (typeName: string) => {
    const refuse = (): never => fail(`values of type ${typeName} cannot be ordered or compared exactly outside PostgreSQL`);
    return order(refuse, refuse, refuse);
  },
});

const SMALL_INTEGER = /^-?\d{1,15}$/;

function toDecimal(value: number | Decimal): Decimal {
  return typeof value === 'number' ? decimalFromInteger(value) : value;
}

function fail(what: string): never {
  throw incomparable(what);
}

interface ArrayKey {
  readonly elements: readonly unknown[];
  readonly dims: readonly number[];
  readonly lowerBounds: readonly number[];
}

/** PostgreSQL's array_cmp: elements in storage order (NULL above any value), then item count, dimensions and lower bounds. */
function arrayOrder(typeName: string, element: ExactOrder): ExactOrder<ArrayKey> {
  const compareLists = (a: readonly number[], b: readonly number[]): number => {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
    return 0;
  };
  return order(
    (text) => {
      const parsed = parseArrayText(text) ?? fail(`the ${typeName} value ${JSON.stringify(text.slice(0, 60))} is not an array PostgreSQL prints`);
      return { ...parsed, elements: parsed.elements.map((e) => (e === null ? null : element.read(e))) };
    },
    (a, b) => {
      const n = Math.min(a.elements.length, b.elements.length);
      for (let i = 0; i < n; i++) {
        const x = a.elements[i];
        const y = b.elements[i];
        if (x === null || y === null) {
          if (x !== y) return x === null ? 1 : -1;
          continue;
        }
        const c = element.compare(x, y);
        if (c !== 0) return c;
      }
      return (
        a.elements.length - b.elements.length ||
        a.dims.length - b.dims.length ||
        compareLists(a.dims, b.dims) ||
        compareLists(a.lowerBounds, b.lowerBounds)
      );
    },
    (k) => JSON.stringify([k.dims, k.lowerBounds, k.elements.map((e) => (e === null ? null : element.equality(e)))]),
  );
}

/**
 * Where a compared value's type is read in a shard's row description: the visible field at that
 * position (`>= 0`, counted from the first field), or hidden field `h` (the plan's `h`-th helper
 * column, counted among the helper columns, which come last) as `-(h + 1)`.
 */
export type TypeField = number;

/**
 * What the shards' row descriptions and the database say about the compared values' types: the
 * type name of a field (as `format_type` prints it, the same on every shard), and the labels of an
 * enum type in their sort order (`undefined` when the type is not an enum). The executor builds it
 * from each shard's column type OIDs before merging.
 */
export interface TypeLookup {
  fieldType(field: TypeField): string;
  enumLabels(typeName: string): readonly string[] | undefined;
  /**
   * A merged aggregate's value as the app's pg type parser for `typeName` gives it, from the
   * PostgreSQL text the merge computed exactly (a sum, count or avg). Without it the merge adds
   * the values the parsers gave.
   */
  parse?(typeName: string, text: string): unknown;
}

/** An enum's order: its labels' positions (PostgreSQL sorts an enum by `enumsortorder`, not text). */
function enumOrder(typeName: string, labels: readonly string[]): ExactOrder<number> {
  const position = new Map(labels.map((label, i) => [label, i]));
  return order(
    (text) => position.get(text) ?? fail(`the ${typeName} value ${JSON.stringify(text)} is not one of its labels`),
    compareScalars,
    String,
  );
}

const cache = new Map<string, ExactOrder>();

/**
 * The exact order of values whose PostgreSQL type is `typeName` (as `format_type` prints
 * it), over their text output. Arrays of a supported element type are supported, and enums when
 * `types` knows their labels.
 */
export function exactOrder(typeName: string, compareText: TextComparator, types?: TypeLookup): ExactOrder {
  if (compareText !== compareCodePoints || (types !== undefined && valueClassOf(typeName.replace(/\[\]$/, '')) === 'other')) return buildOrder(typeName, compareText, types);
  let found = cache.get(typeName);
  if (found === undefined) {
    found = buildOrder(typeName, compareText, undefined);
    if (cache.size < 1000) cache.set(typeName, found);
  }
  return found;
}

function scalarOrder(typeName: string, compareText: TextComparator, types: TypeLookup | undefined): { order: ExactOrder; known: boolean } {
  const valueClass = valueClassOf(typeName);
  if (valueClass === 'other') {
    const labels = types?.enumLabels(typeName);
    if (labels !== undefined) return { order: enumOrder(typeName, labels), known: true };
  }
  return { order: ORDERS[valueClass](typeName, compareText), known: valueClass !== 'other' };
}

function buildOrder(typeName: string, compareText: TextComparator, types: TypeLookup | undefined): ExactOrder {
  if (typeName.endsWith('[]')) {
    const element = scalarOrder(typeName.slice(0, -2), compareText, types);
    return element.known ? arrayOrder(typeName, element.order) : element.order;
  }
  return scalarOrder(typeName, compareText, types).order;
}

/**
 * PostgreSQL's text form of a value the merge itself computed or was handed (a merged count, sum or
 * avg, or a test's literal): strings as they are, numbers and bigints in base 10, booleans as t/f.
 */
export function textOf(value: unknown, typeName: string): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'bigint':
      return String(value);
    case 'boolean':
      return value ? 't' : 'f';
    default:
      return fail(`values of type ${typeName} that are not text cannot be compared exactly (got a JS ${value === null ? 'null' : typeof value})`);
  }
}

/** A comparer of non-null values of one type given as text (or as numbers for computed aggregates). */
export interface ValueComparer {
  /** Negative, zero or positive, like PostgreSQL's `<` / `=` / `>` for this type. Never called with null. */
  compare(a: unknown, b: unknown): number;
  /** A string that is equal for two values exactly when PostgreSQL considers them equal. */
  key(value: unknown): string;
}

/** A {@link ValueComparer} over the text (see {@link textOf}) of values of type `typeName`. */
export function valueComparer(typeName: string, compareText: TextComparator): ValueComparer {
  const exact = exactOrder(typeName, compareText);
  const read = (value: unknown): unknown => exact.read(textOf(value, typeName));
  return Object.freeze({
    compare: (a: unknown, b: unknown) => exact.compare(read(a), read(b)),
    key: (value: unknown) => exact.equality(read(value)),
  });
}
