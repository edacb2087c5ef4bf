/**
 * Merging of per-shard aggregate values into the value one database would return. Each kind has a
 * merger (exhaustive over {@link AggregateKind}); values keep the JS form node-postgres gave them
 * (bigint/numeric as strings, floats as numbers, or bigint when the app parses int8 so).
 *
 * - `count`: sum of the shards' counts.
 * - `sum`: exact decimal sum for strings (scale = the larger scale, as PostgreSQL prints it);
 *   float sums add in shard order and may differ from PostgreSQL in the last bits, as PostgreSQL's
 *   own parallel plans do.
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
  /** min/max: the field whose type (from the shards' row descriptions) is the value's. */
  readonly typeField?: TypeField;
  /** min/max: row key of the partial value's text (`min(x)::text`), which is what is compared. */
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

/** Mergers by kind; a new kind without a merger does not compile. */
export const AGGREGATE_MERGERS: Readonly<Record<AggregateKind, AggregateMerger>> = Object.freeze({
  count: (columns) => {
    const sum = new Sum();
    return {
      add: (row) => sum.add(row[columns.value]),
      // count over no rows at all (no shard answered) is PostgreSQL's bigint 0, a string by default.
      result: () => (sum.empty ? '0' : sum.value()),
    };
  },
  sum: (columns) => {
    const sum = new Sum();
    return { add: (row) => sum.add(row[columns.value]), result: () => sum.value() };
  },
  min: extreme(1),
  max: extreme(-1),
  avg: (columns) => {
    const sum = new Sum();
    const count = new Sum();
    const countColumn = columns.count as string;
    return {
      add(row) {
        sum.add(row[columns.value]);
        count.add(row[countColumn]);
      },
      result() {
        const n = count.count();
        if (n < 0n) throw incomparable(`the shards' counts for avg() add up to ${n}`);
        if (n === 0n || sum.empty) return null;
        const exact = sum.exact();
        if (exact === undefined) return (sum.value() as number) / Number(n);
        return formatDecimal(divideDecimalLikePostgres(exact, n));
      },
    };
  },
});

/** Whether `name` (as kysely spells a function) is an aggregate the scatter merges. */
export function isAggregateKind(name: string): name is AggregateKind {
  return Object.prototype.hasOwnProperty.call(AGGREGATE_MERGERS, name);
}
