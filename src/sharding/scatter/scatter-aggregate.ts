/**
 * Merging of per-shard aggregate values into the value one database would return. Each kind has a
 * merger (exhaustive over {@link AggregateKind}). count, sum and avg add each shard's partial as
 * PostgreSQL printed it (a hidden `::text` column) and hand the result's text to the app's pg type
 * parser for the result's type, so a parser that loses digits loses them once, as on one database;
 * without the text or the parsers they add the parsed values, keeping their JS form.
 *
 * - `count`: sum of the shards' counts.
 * - `sum`: exact decimal sum (scale = the larger scale, as PostgreSQL prints it); float sums add
 *   in shard order and may differ from PostgreSQL in the last bits, as PostgreSQL's own parallel
 *   plans do.
 * - `min`/`max`: each shard's value compared exactly by its text (`min(x)::text`) and PostgreSQL
 *   type (see scatter-compare); the winner is returned as node-postgres parsed it.
 * - `avg`: shards return `sum(x)` and `count(x)`; the merge divides like `numeric_div`, so the
 *   text equals PostgreSQL's `avg` for integer and numeric columns. For float columns the
 *   quotient is a float division of the merged sum (close, not bit-identical).
 *
 * @packageDocumentation
 */
import { exactOrder, type ExactOrder, incomparable, type TextComparator, type TypeField, type TypeLookup } from './scatter-compare';
import { typeNameOf } from './scatter-order';
import {
  addDecimal,
  type Decimal,
  decimalFromInteger,
  divideDecimalLikePostgres,
  formatDecimal,
  parseDecimal,
} from './scatter-decimal';

type Row = Record<string, unknown>;

/** Aggregate functions a scatter can merge. */
export type AggregateKind = 'count' | 'sum' | 'min' | 'max' | 'avg';

/** Where a merger reads its inputs in each shard row. */
export interface AggregateColumns {
  /** Row key of the shard's partial value (for avg: the partial sum). */
  readonly value: string;
  /** avg: row key of the partial count. */
  readonly count?: string;
  /** The field whose type (from the shards' row descriptions) is the partial's (for avg: its partial sum's). */
  readonly typeField?: TypeField;
  /** Row key of the partial's PostgreSQL text (`min(x)::text`, `sum(x)::text`): what min/max compare and count/sum/avg add exactly. */
  readonly text?: string;
}

/** Accumulates one aggregate of one group over the shards' rows. */
export interface AggregateAccumulator {
  add(row: Row): void;
  result(): unknown;
  /** min/max: the PostgreSQL text of the result, for ordering merged groups by it. */
  text?(): string | null;
}

/** Creates an accumulator for one aggregate of one group. */
export type AggregateMerger = (columns: AggregateColumns, compareText: TextComparator, types?: TypeLookup) => AggregateAccumulator;

/** Exact running sum that keeps the JS form of its inputs. */
class Sum {
  private decimal: Decimal | undefined;
  private float: number | undefined;
  private integer: bigint | undefined;

  add(value: unknown): void {
    if (value === null || value === undefined) return;
    if (typeof value === 'string') {
      const parsed = parseDecimal(value);
      if (parsed === undefined) throw incomparable(`the partial aggregate ${JSON.stringify(value)} is not a number`);
      this.decimal = this.decimal === undefined ? parsed : addDecimal(this.decimal, parsed);
    } else if (typeof value === 'number') {
      this.float = (this.float ?? 0) + value;
    } else if (typeof value === 'bigint') {
      this.integer = (this.integer ?? 0n) + value;
    } else {
      throw incomparable(`a partial aggregate of JS type ${typeof value} cannot be added`);
    }
    const forms = Number(this.decimal !== undefined) + Number(this.float !== undefined) + Number(this.integer !== undefined);
    if (forms > 1) throw incomparable('shards returned one aggregate in different JS forms');
  }

  /**
   * Adds a partial's PostgreSQL text: as an exact decimal, or as a float when the aggregate's type
   * is `real`/`double precision` (whose text may read `1e+20`, `NaN` or `Infinity`).
   */
  addText(text: unknown, float: boolean): void {
    if (text === null || text === undefined) return;
    if (float) {
      this.add(Number(text));
      return;
    }
    const parsed = parseDecimal(String(text));
    if (parsed === undefined || this.float !== undefined || this.integer !== undefined) throw incomparable(`the partial aggregate ${JSON.stringify(text)} is not a number`);
    this.decimal = this.decimal === undefined ? parsed : addDecimal(this.decimal, parsed);
  }

  /** The sum as PostgreSQL would print it (decimals exactly; floats as JS prints them, which reads back to the same float). */
  text(): string | null {
    if (this.decimal !== undefined) return formatDecimal(this.decimal);
    const value = this.float ?? this.integer;
    return value === undefined ? null : String(value);
  }

  get empty(): boolean {
    return this.decimal === undefined && this.float === undefined && this.integer === undefined;
  }

  /** The sum in its input form, or null when every input was null. */
  value(): unknown {
    if (this.decimal !== undefined) return formatDecimal(this.decimal);
    return this.float ?? this.integer ?? null;
  }

  /** The sum as a decimal for exact division, or undefined for float sums. */
  exact(): Decimal | undefined {
    if (this.decimal !== undefined) return this.decimal;
    return this.integer === undefined ? undefined : decimalFromInteger(this.integer);
  }

  /** Total as a bigint (for counts). */
  count(): bigint {
    const exact = this.exact();
    if (exact !== undefined && exact.kind === 'finite' && exact.scale === 0) return exact.unscaled;
    if (this.float !== undefined) return BigInt(this.float);
    return 0n;
  }
}

function extreme(direction: 1 | -1): AggregateMerger {
  return (columns, compareText, types) => {
    let best: unknown = null;
    let bestText: string | null = null;
    let bestKey: unknown;
    let order: ExactOrder | undefined;
    const textColumn = columns.text ?? columns.value;
    return {
      add(row) {
        const text = row[textColumn];
        if (text === null || text === undefined) return;
        order ??= exactOrder(typeNameOf(columns, types), compareText, types);
        const key = order.read(String(text));
        if (bestText === null || order.compare(key, bestKey) * direction < 0) {
          best = row[columns.value];
          bestText = String(text);
          bestKey = key;
        }
      },
      result: () => best,
      text: () => bestText,
    };
  };
}

const FLOAT_TYPES: ReadonlySet<string> = new Set(['real', 'double precision']);

/**
 * How a sum or avg is merged exactly: from each shard's partial as PostgreSQL printed it
 * (its `text` column), the result handed to the app's parser for the result's type, so a parser
 * that loses digits (int8 or numeric into JS numbers) loses them once, as on one database. `undefined`
 * without the text column or the parsers (the merge then adds the parsed partials).
 */
function exactInputs(columns: AggregateColumns, types: TypeLookup | undefined): { readonly type: string; readonly parse: (typeName: string, text: string) => unknown } | undefined {
  if (columns.text === undefined || columns.typeField === undefined || types?.parse === undefined) return undefined;
  const parse = types.parse.bind(types);
  return { type: types.fieldType(columns.typeField), parse };
}

/** count and sum: the shards' partials added; `empty`: the result when no shard had a row. */
function total(empty: string | null): AggregateMerger {
  return (columns, _compareText, types) => {
    const sum = new Sum();
    const exact = exactInputs(columns, types);
    const float = exact !== undefined && FLOAT_TYPES.has(exact.type);
    return {
      add(row) {
        if (exact === undefined) sum.add(row[columns.value]);
        else sum.addText(row[columns.text!], float);
      },
      result() {
        if (exact === undefined) return sum.empty ? empty : sum.value();
        const text = sum.empty ? empty : sum.text();
        return text === null ? null : exact.parse(exact.type, text);
      },
      text: () => (sum.empty ? empty : sum.text()),
    };
  };
}

/** Mergers by kind; a new kind without a merger does not compile. */
export const AGGREGATE_MERGERS: Readonly<Record<AggregateKind, AggregateMerger>> = Object.freeze({
  // count over no rows at all (no shard answered) is PostgreSQL's bigint 0.
  count: total('0'),
  sum: total(null),
  min: extreme(1),
  max: extreme(-1),
  avg: (columns, _compareText, types) => {
    const sum = new Sum();
    const count = new Sum();
    const countColumn = columns.count as string;
    const exact = exactInputs(columns, types);
    const float = exact !== undefined && FLOAT_TYPES.has(exact.type);
    const quotient = (): { value: unknown; text: string | null } => {
      const n = count.count();
      if (n < 0n) throw incomparable(`the shards' counts for avg() add up to ${n}`);
      if (n === 0n || sum.empty) return { value: null, text: null };
      const decimal = sum.exact();
      if (decimal === undefined || float) {
        const value = (sum.value() as number) / Number(n);
        return { value, text: String(value) };
      }
      const text = formatDecimal(divideDecimalLikePostgres(decimal, n));
      return { value: text, text };
    };
    return {
      add(row) {
        if (exact === undefined) sum.add(row[columns.value]);
        else sum.addText(row[columns.text!], float);
        count.add(row[countColumn]);
      },
      result() {
        const { value, text } = quotient();
        // avg of integers and numerics is numeric; of floats double precision.
        return exact === undefined || text === null ? value : exact.parse(float ? 'double precision' : 'numeric', text);
      },
      text: () => quotient().text,
    };
  },
});

/** Whether `name` (as kysely spells a function) is an aggregate the scatter merges. */
export function isAggregateKind(name: string): name is AggregateKind {
  return Object.prototype.hasOwnProperty.call(AGGREGATE_MERGERS, name);
}
