/**
 * The merge half of a scatter plan: turns each shard's rows into the rows one database holding all
 * rows would return. One merger per plan mode (exhaustive over {@link MergeMode}); all are pure.
 *
 * @packageDocumentation
 */
import { AGGREGATE_MERGERS, type AggregateAccumulator, type AggregateColumns, type AggregateKind } from './scatter-aggregate';
import { exactOrder, type ExactOrder, type TextComparator, type TypeField, type TypeLookup } from './scatter-compare';
import { mergeSorted, type OrderKey, rowOrder, type RowOrder, sortRows, typeNameOf } from './scatter-order';

type Row = Record<string, unknown>;

/** `rows`: plain select; `distinct`: SELECT DISTINCT; `aggregate`: aggregates and/or GROUP BY. */
export type MergeMode = 'rows' | 'distinct' | 'aggregate';

/** Where a visible column of an aggregate query's result comes from. */
export type OutputSource =
  | { readonly kind: 'first'; readonly column: string }
  | { readonly kind: 'aggregate'; readonly aggregate: AggregateKind; readonly columns: AggregateColumns };

/** A column compared for equality (GROUP BY key, DISTINCT column): its row key, the field giving its type, and the row key of its text. */
export interface KeyColumn {
  readonly column: string;
  readonly typeField: TypeField;
  /** Row key of `expr::text`: equality is decided on PostgreSQL's text, never on the parsed value. */
  readonly textColumn: string;
}

/** Everything the merge needs to know about a planned query; built by planScatter, frozen. */
export interface MergeSpec {
  readonly mode: MergeMode;
  readonly orderKeys: readonly OrderKey[];
  /** Rows skipped after merging (the original OFFSET). */
  readonly offset: number;
  /** Rows kept after the offset (the original LIMIT), or undefined for all. */
  readonly limit: number | undefined;
  /** Helper columns added to the shard query; never part of a result row. */
  readonly hidden: ReadonlySet<string>;
  /** distinct: the columns whose values make a row distinct; aggregate: the GROUP BY key columns. */
  readonly keyColumns: readonly KeyColumn[];
  /** aggregate: the result columns in select order. */
  readonly outputs: readonly { readonly name: string; readonly source: OutputSource }[];
  /** aggregate: true when there is no GROUP BY, so the result is always exactly one row. */
  readonly singleGroup: boolean;
  readonly compareText: TextComparator;
  /** The compared values' types and enum labels for this merge (see {@link TypeLookup}); needed whenever a key's type is read from a field. */
  readonly types?: TypeLookup;
  /** The order of {@link MergeSpec.orderKeys} with these `compareText` and `types`, when built ahead (a plan's, reused by every merge). */
  readonly order?: RowOrder;
}

/** The row order of the spec's ORDER BY keys: the one built ahead, else a new one. */
export function orderOf(spec: MergeSpec): RowOrder {
  return spec.order ?? rowOrder(spec.orderKeys, spec.compareText, spec.types);
}

/** Rows the merge keeps before applying offset: offset + limit, or all. */
export function rowsToTake(spec: MergeSpec): number {
  return spec.limit === undefined ? Infinity : spec.offset + spec.limit;
}

/**
 * Copies rows without the plan's hidden helper columns (or returns them as they are when there are
 * none). The rows of one merge all have the same columns (one statement): the visible column
 * names are found once, from the first row, and copied in that order.
 */
export function hiddenStripper(hidden: ReadonlySet<string>): (row: Row) => Row {
  if (hidden.size === 0) return (row) => row;
  let visible: string[] | undefined;
  return (row) => {
    visible ??= Object.keys(row).filter((key) => !hidden.has(key));
    const out: Row = {};
    for (let i = 0; i < visible.length; i++) {
      const key = visible[i]!;
      out[key] = row[key];
    }
    return out;
  };
}

function window(rows: Row[], spec: MergeSpec): Row[] {
  return spec.offset === 0 && spec.limit === undefined ? rows : rows.slice(spec.offset, rowsToTake(spec));
}

function orderedUnion(rowsPerShard: readonly (readonly Row[])[], spec: MergeSpec, take: number): Row[] {
  if (spec.orderKeys.length > 0) return mergeSorted(rowsPerShard, orderOf(spec), take);
  const out: Row[] = [];
  for (const rows of rowsPerShard) {
    for (const row of rows) {
      if (out.length >= take) return out;
      out.push(row);
    }
  }
  return out;
}

/** Equality key of a row over some columns, each compared exactly with its PostgreSQL type. */
function rowKey(row: Row, columns: readonly KeyColumn[], orders: (ExactOrder | undefined)[], spec: MergeSpec): string {
  let key = '';
  for (let i = 0; i < columns.length; i++) {
    const text = row[columns[i]!.textColumn];
    if (text === null || text === undefined) {
      key += '\u0000\u0001'; // NULLs are one group (GROUP BY) and one row (DISTINCT)
      continue;
    }
    // A column's type is the same in every row of a merge: its order is resolved once.
    const order = (orders[i] ??= exactOrder(typeNameOf(columns[i]!, spec.types), spec.compareText, spec.types));
    key += `${JSON.stringify(order.equality(order.read(String(text))))}\u0001`;
  }
  return key;
}

function mergeRows(rowsPerShard: readonly (readonly Row[])[], spec: MergeSpec): Row[] {
  return window(orderedUnion(rowsPerShard, spec, rowsToTake(spec)), spec).map(hiddenStripper(spec.hidden));
}

function mergeDistinct(rowsPerShard: readonly (readonly Row[])[], spec: MergeSpec): Row[] {
  const seen = new Set<string>();
  const orders: (ExactOrder | undefined)[] = [];
  const unique: Row[] = [];
  const take = rowsToTake(spec);
  for (const row of orderedUnion(rowsPerShard, spec, Infinity)) {
    const key = rowKey(row, spec.keyColumns, orders, spec);
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(row);
    if (unique.length >= take) break;
  }
  return window(unique, spec).map(hiddenStripper(spec.hidden));
}

interface Group {
  readonly first: Row;
  readonly accumulators: readonly AggregateAccumulator[];
}

function mergeAggregates(rowsPerShard: readonly (readonly Row[])[], spec: MergeSpec): Row[] {
  const groups = new Map<string, Group>();
  const orders: (ExactOrder | undefined)[] = [];
  const aggregates = spec.outputs.flatMap(({ source }) => (source.kind === 'aggregate' ? [source] : []));
  const newGroup = (first: Row): Group => ({
    first,
    accumulators: aggregates.map((source) => AGGREGATE_MERGERS[source.aggregate](source.columns, spec.compareText, spec.types)),
  });
  for (const rows of rowsPerShard) {
    for (const row of rows) {
      const key = spec.singleGroup ? '' : rowKey(row, spec.keyColumns, orders, spec);
      let group = groups.get(key);
      if (group === undefined) {
        group = newGroup(row);
        groups.set(key, group);
      }
      for (const accumulator of group.accumulators) accumulator.add(row);
    }
  }
  // An aggregate without GROUP BY returns one row even over no rows at all.
  if (spec.singleGroup && groups.size === 0) groups.set('', newGroup({}));

  // Sort on the visible values plus the first row's hidden text columns, then keep only the visible ones.
  const merged = [...groups.values()].map((group) => {
    const out: Row = {};
    let next = 0;
    const sortRow: Row = { ...group.first };
    const merged: [string, string | null][] = [];
    for (const { name, source } of spec.outputs) {
      if (source.kind === 'first') {
        out[name] = group.first[source.column] ?? null;
        continue;
      }
      const accumulator = group.accumulators[next++] as AggregateAccumulator;
      out[name] = accumulator.result();
      const text = accumulator.text?.() ?? null;
      // min/max are ordered by the winning shard value's text, which the accumulator kept;
      // count/sum/avg by their merged text (exact, whatever the app's parser made of it).
      if (source.aggregate === 'min' || source.aggregate === 'max') {
        if (source.columns.text !== undefined) sortRow[source.columns.text] = text;
      } else if (accumulator.text !== undefined) merged.push([name, text]);
    }
    Object.assign(sortRow, out);
    for (const [name, text] of merged) sortRow[name] = text;
    return { out, sortRow };
  });
  const sorted = spec.orderKeys.length > 0 ? sortRows(merged, (m) => m.sortRow, orderOf(spec)) : merged;
  return window(sorted.map((m) => m.out), spec);
}

/** Mergers by mode; a new mode without a merger does not compile. */
export const MERGERS: Readonly<Record<MergeMode, (rowsPerShard: readonly (readonly Row[])[], spec: MergeSpec) => Row[]>> =
  Object.freeze({ rows: mergeRows, distinct: mergeDistinct, aggregate: mergeAggregates });
