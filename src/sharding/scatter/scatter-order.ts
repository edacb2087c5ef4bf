/**
 * ORDER BY across shards: a row comparator with PostgreSQL's null placement and value order, and
 * a k-way merge of per-shard row lists that each shard already sorted.
 *
 * @packageDocumentation
 */
import { ErrorCodes } from '../../kernel/errors';
import { RoutingError } from '../sharding-errors';
import { exactOrder, textOf, type ExactOrder, type TextComparator, type TypeLookup } from './scatter-compare';

type Row = Record<string, unknown>;

/** One ORDER BY item, resolved to the row keys that hold its value's text and its type. */
export interface OrderKey {
  /**
   * Row key of the value's PostgreSQL text (`expr::text`, a hidden helper column), or of a value
   * the merge computed (a merged count, sum or avg, see {@link textOf}).
   */
  readonly column: string;
  /** Row key holding `pg_typeof(expr)::text`; absent when {@link OrderKey.typeName} is known. */
  readonly typeColumn?: string;
  /** PostgreSQL type name when the plan knows it (e.g. `numeric` for count/sum/avg results). */
  readonly typeName?: string;
  readonly descending: boolean;
  readonly nullsFirst: boolean;
}

/** Compares two rows; negative when `a` sorts first. */
export type RowComparator = (a: Row, b: Row) => number;

/** The exact order of a key's type, resolved from the type a row carries and cached per type name. */
function keyOrder(key: OrderKey, compareText: TextComparator, types: TypeLookup | undefined): (row: Row) => { order: ExactOrder; typeName: string } {
  let cached: { order: ExactOrder; typeName: string } | undefined;
  return (row) => {
    const typeName = key.typeName ?? String(key.typeColumn === undefined ? 'unknown' : row[key.typeColumn]);
    if (cached === undefined || typeName !== cached.typeName) cached = { order: exactOrder(typeName, compareText, types), typeName };
    return cached;
  };
}

/**
 * Builds the comparator of an ORDER BY list (PostgreSQL: NULLS LAST for ASC, NULLS FIRST for DESC
 * by default). Each row's text is read into its exact key once (a k-way merge compares a row
 * several times).
 */
export function rowComparator(keys: readonly OrderKey[], compareText: TextComparator, types?: TypeLookup): RowComparator {
  const orders = keys.map((key) => keyOrder(key, compareText, types));
  // The keys read from a row, kept on the row under a symbol of this comparator (cheaper than a
  // WeakMap; symbols are invisible to the hidden-column stripping and to callers).
  const cache = Symbol('kysely-scale order keys');
  const read = (row: Row, i: number): unknown => {
    const holder = row as unknown as Record<symbol, unknown[] | undefined>;
    let values = holder[cache];
    if (values === undefined) holder[cache] = values = new Array<unknown>(keys.length);
    let result = values[i];
    if (result !== undefined) return result;
    const value = row[keys[i]!.column];
    result = null;
    if (value !== null && value !== undefined) {
      const { order, typeName } = orders[i]!(row);
      result = order.read(textOf(value, typeName));
    }
    values[i] = result;
    return result;
  };
  return (a, b) => {
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      const x = read(a, i);
      const y = read(b, i);
      let result: number;
      if (x === null || y === null) {
        if (x === y) continue;
        result = (x === null) === key.nullsFirst ? -1 : 1;
      } else {
        result = orders[i]!(a).order.compare(x, y);
        if (key.descending) result = -result;
      }
      if (result !== 0) return result;
    }
    return 0;
  };
}

/** Raised when a shard's rows are not sorted the way the comparator sorts them (e.g. a non-C collation). */
export function orderMismatch(shardIndex: number): RoutingError {
  return new RoutingError(
    ErrorCodes.UNSUPPORTED_SCATTER,
    `Cannot merge this scatter query across shards: shard #${shardIndex} returned rows in an order that ` +
      "differs from kysely-scale's comparison (text is compared in C collation order; is the database collation " +
      'different?). Pass a matching compareText to planScatter, add the shard key, or use withShard(id).',
    { unsupported: 'order mismatch', shardIndex },
  );
}

/**
 * Merges lists that are each sorted by `compare` into one sorted list of at most `take` rows.
 * Ties go to the lower shard index, so the merge is stable. Throws {@link orderMismatch} when a
 * list is not sorted by `compare`, rather than return misordered rows.
 */
export function mergeSorted(lists: readonly (readonly Row[])[], compare: RowComparator, take = Infinity): Row[] {
  const positions = lists.map(() => 0);
  const out: Row[] = [];
  // Shards are few (tens at most), so a linear scan for the smallest head beats a heap.
  while (out.length < take) {
    let best = -1;
    let bestRow: Row | undefined;
    for (let i = 0; i < lists.length; i++) {
      const row = (lists[i] as readonly Row[])[positions[i] as number];
      if (row !== undefined && (bestRow === undefined || compare(row, bestRow) < 0)) {
        best = i;
        bestRow = row;
      }
    }
    if (bestRow === undefined) break;
    const list = lists[best] as readonly Row[];
    const next = (positions[best] as number) + 1;
    positions[best] = next;
    const following = list[next];
    if (following !== undefined && compare(bestRow, following) > 0) throw orderMismatch(best);
    out.push(bestRow);
  }
  return out;
}
