/**
 * ORDER BY across shards: each row's sort keys read once from PostgreSQL's text of its values
 * (with PostgreSQL's null placement, by the type the shards' row descriptions give), their comparison, and a k-way merge of per-shard row lists
 * that each shard already sorted.
 *
 * @packageDocumentation
 */
import { ErrorCodes } from '../../kernel/errors';
import { RoutingError } from '../sharding-errors';
import { exactOrder, incomparable, textOf, type ExactOrder, type TextComparator, type TypeField, type TypeLookup } from './scatter-compare';

type Row = Record<string, unknown>;

/** One ORDER BY item, resolved to the row key that holds its value's text and to where its type is read. */
export interface OrderKey {
  /**
   * Row key of the value's PostgreSQL text (`expr::text`, a hidden helper column), or of a value
   * the merge computed (a merged count, sum or avg, see {@link textOf}).
   */
  readonly column: string;
  /** The field whose type (from the shards' row descriptions) is the value's; absent when {@link OrderKey.typeName} is known. */
  readonly typeField?: TypeField;
  /** PostgreSQL type name when the plan knows it (e.g. `numeric` for count/sum/avg results). */
  readonly typeName?: string;
  readonly descending: boolean;
  readonly nullsFirst: boolean;
}

/**
 * A row's sort keys: for n ORDER BY items, the n exact keys (`null` for SQL NULL) followed by the
 * n orders they were read with. Read once per row, compared many times.
 */
export type SortKeys = readonly unknown[];

/** An ORDER BY list over rows: reads a row's {@link SortKeys} and compares two of them. */
export interface RowOrder {
  keysOf(row: Row): SortKeys;
  /** Negative when the row of `a` sorts first. */
  compare(a: SortKeys, b: SortKeys): number;
}

/** The key's type name: known to the plan, or read from the shards' row descriptions. */
export function typeNameOf(key: { readonly typeName?: string; readonly typeField?: TypeField }, types: TypeLookup | undefined): string {
  if (key.typeName !== undefined) return key.typeName;
  if (key.typeField === undefined || types === undefined) throw incomparable('a compared value whose type the shards did not describe');
  return types.fieldType(key.typeField);
}

/**
 * The order of an ORDER BY list (PostgreSQL: NULLS LAST for ASC, NULLS FIRST for DESC by
 * default). Rows are never modified.
 */
export function rowOrder(keys: readonly OrderKey[], compareText: TextComparator, types?: TypeLookup): RowOrder {
  const n = keys.length;
  // A key's type is the same in every row of a merge, so its order is resolved once, on first use.
  const orders: (ExactOrder | undefined)[] = keys.map(() => undefined);
  const orderOf = (i: number): ExactOrder => (orders[i] ??= exactOrder(typeNameOf(keys[i]!, types), compareText, types));
  const columns = keys.map((key) => key.column);
  const descending = keys.map((key) => key.descending);
  const nullsFirst = keys.map((key) => key.nullsFirst);
  return {
    keysOf(row) {
      const out = new Array<unknown>(2 * n);
      for (let i = 0; i < n; i++) {
        const value = row[columns[i]!];
        if (value === null || value === undefined) {
          out[i] = null;
          continue;
        }
        const order = orderOf(i);
        out[i] = order.read(typeof value === 'string' ? value : textOf(value, typeNameOf(keys[i]!, types)));
        out[n + i] = order;
      }
      return out;
    },
    compare(a, b) {
      for (let i = 0; i < n; i++) {
        const x = a[i];
        const y = b[i];
        let result: number;
        if (x === null || y === null) {
          if (x === y) continue;
          result = (x === null) === nullsFirst[i] ? -1 : 1;
        } else {
          result = (a[n + i] as ExactOrder).compare(x, y);
          if (descending[i]) result = -result;
        }
        if (result !== 0) return result;
      }
      return 0;
    },
  };
}

/** Sorts rows by `order`, reading each row's keys once. */
export function sortRows<T>(items: readonly T[], rowOf: (item: T) => Row, order: RowOrder): T[] {
  const keyed = items.map((item) => ({ item, keys: order.keysOf(rowOf(item)) }));
  keyed.sort((a, b) => order.compare(a.keys, b.keys));
  return keyed.map((k) => k.item);
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
 * Merges lists that are each sorted by `order` into one sorted list of at most `take` rows.
 * Ties go to the lower shard index, so the merge is stable. Throws {@link orderMismatch} when a
 * list is not sorted by `order`, rather than return misordered rows. Each row's keys are read
 * once, when it becomes its list's head.
 */
export function mergeSorted(lists: readonly (readonly Row[])[], order: RowOrder, take = Infinity): Row[] {
  const positions = lists.map(() => 0);
  const heads = lists.map((list): SortKeys | undefined => (list.length > 0 ? order.keysOf(list[0]!) : undefined));
  const out: Row[] = [];
  // Shards are few (tens at most), so a linear scan for the smallest head beats a heap.
  while (out.length < take) {
    let best = -1;
    let bestKeys: SortKeys | undefined;
    for (let i = 0; i < heads.length; i++) {
      const keys = heads[i];
      if (keys !== undefined && (bestKeys === undefined || order.compare(keys, bestKeys) < 0)) {
        best = i;
        bestKeys = keys;
      }
    }
    if (bestKeys === undefined) break;
    const list = lists[best]!;
    const at = positions[best]!;
    out.push(list[at]!);
    positions[best] = at + 1;
    const following = list[at + 1];
    if (following === undefined) {
      heads[best] = undefined;
      continue;
    }
    const next = order.keysOf(following);
    if (order.compare(bestKeys, next) > 0) throw orderMismatch(best);
    heads[best] = next;
  }
  return out;
}
