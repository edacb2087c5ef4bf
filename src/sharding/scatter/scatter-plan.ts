/**
 * Scatter planning: for a SELECT with no shard key on a `scatter` table, derive the query every
 * shard runs and a pure merge that turns the shards' rows into exactly the rows one database
 * holding all rows would return. No I/O happens here; the driver compiles {@link ScatterPlan.shardNode},
 * runs it on every shard and hands the rows (in shard order) to {@link ScatterPlan.merge} or the
 * row streams to {@link ScatterPlan.mergeStreams}.
 *
 * How the shard query differs from the original:
 * - LIMIT n OFFSET m becomes LIMIT n+m (OFFSET applies after merging).
 * - Each value the merge compares (ORDER BY, DISTINCT, GROUP BY keys, min/max) gets two hidden
 *   columns, `pg_typeof(expr)::text` and `(expr)::text`: the merge compares PostgreSQL's text by the
 *   type's exact order (microseconds of a timestamp, digits of an int8 or numeric), never the value
 *   node-postgres parsed. ORDER BY expressions that are not selected are compared the same way
 *   (plain selects only).
 * - avg(x) becomes sum(x) and count(x) under hidden aliases; min/max and GROUP BY keys carry their
 *   type. With aggregates or GROUP BY, ORDER BY / LIMIT / OFFSET move to the merge.
 * Hidden columns are named `__ks_*` and never appear in merged rows.
 *
 * Refused (RoutingError `E_UNSUPPORTED_SCATTER`, naming what and how to fix): HAVING, window
 * functions, DISTINCT ON, set operations, WITH, subqueries, joins (unless the router vouches they
 * are co-located), FROM items that are not tables, aggregates other than count/sum/min/max/avg,
 * DISTINCT/ORDER BY/WITHIN GROUP inside an aggregate, aggregates inside expressions, GROUP BY
 * expressions that are not selected, `*` with DISTINCT or aggregates, raw SQL that looks like an
 * aggregate, window or subquery, non-literal LIMIT/OFFSET, non-C ORDER BY collations; and, when the
 * rows arrive, comparing values of a type whose order or equality the merge cannot reproduce
 * exactly (jsonb, enums, domains, money, ranges, …; see scatter-compare).
 *
 * Limits of what can be detected: an aggregate that is user-defined and called through raw SQL or
 * `eb.fn(...)`, and text under a non-C database collation (the merge checks each shard's order and
 * fails on a mismatch; pass `compareText` to use another text order).
 *
 * @packageDocumentation
 */
import {
  AggregateFunctionNode,
  AliasNode,
  IdentifierNode,
  type JoinNode,
  LimitNode,
  type OperationNode,
  type OrderByItemNode,
  RawNode,
  SelectionNode,
  SelectQueryNode,
  ValueNode,
} from 'kysely';
import { type AggregateKind, isAggregateKind } from './scatter-aggregate';
import { compareCodePoints, type TextComparator, type TypeLookup } from './scatter-compare';
import { type KeyColumn, MERGERS, type MergeSpec, type OutputSource } from './scatter-merge';
import { type OrderKey, rowOrder } from './scatter-order';
import { mergeChunkStreams, mergeRowStreams } from './scatter-stream';
import {
  type JoinSafety,
  describeSelection,
  identifierName,
  isPlainTable,
  referencedColumn,
  sameNode,
  scanExpression,
  type SelectionInfo,
  unsupportedScatter,
} from './scatter-analyze';

type Row = Record<string, unknown>;

/** A scatter query's shard query and merge; frozen and safe to share. */
export interface ScatterPlan {
  /** The node to compile and run on every shard. */
  readonly shardNode: SelectQueryNode;
  /**
   * Merges each shard's rows (in shard order) into exactly the rows one database holding all rows
   * would return. `types` supplies enum labels for values of types the merge does not know by name.
   */
  merge(rowsPerShard: readonly (readonly Row[])[], types?: TypeLookup): Row[];
  /** Row keys holding `pg_typeof(...)` of the values the merge compares: the types it may need looked up. */
  readonly typeColumns: readonly string[];
  /** Whether {@link ScatterPlan.mergeStreams} streams (plain selects); otherwise it buffers every shard's rows first. */
  readonly streamable: boolean;
  /**
   * Merges per-shard row streams (each in the shard query's order) honouring LIMIT/OFFSET; stops
   * and closes every input once the limit is reached, when the consumer stops, or on an error.
   */
  mergeStreams(streams: readonly AsyncIterable<Row>[]): AsyncIterable<Row>;
  /** {@link ScatterPlan.mergeStreams} over chunks of rows (as cursors read them), yielding chunks of up to `chunkSize` rows. */
  mergeChunks(streams: readonly AsyncIterable<readonly Row[]>[], chunkSize: number): AsyncIterable<Row[]>;
}

/** Options of {@link planScatter}. */
export interface ScatterPlanOptions {
  /**
   * Text order used when merging ORDER BY, min and max over text.
   * @default code-point order, which is PostgreSQL's order under the C, C.UTF-8 and POSIX collations
   */
  readonly compareText?: TextComparator;
  /**
   * Decides whether a join can run unchanged on every shard (both sides sharded on the same key
   * and joined on it). The router knows the shard keys; the planner does not.
   * @default refuses every join
   */
  readonly isJoinSafe?: JoinSafety;
}

const HIDDEN_PREFIX = '__ks_';
const C_COLLATIONS: ReadonlySet<string> = new Set(['c', 'posix', 'ucs_basic']);

/** Builds the shard query's extra selections and their hidden names. */
class ShardSelections {
  readonly selections: SelectionNode[] = [];
  readonly hidden = new Set<string>();
  private counter = 0;
  private readonly types = new Map<OperationNode, string>();
  private readonly texts = new Map<OperationNode, string>();

  add(expression: OperationNode, prefix: string): string {
    const name = `${HIDDEN_PREFIX}${prefix}${this.counter++}`;
    this.selections.push(SelectionNode.create(AliasNode.create(expression, IdentifierNode.create(name))));
    this.hidden.add(name);
    return name;
  }

  /** Adds `pg_typeof(expression)::text` and returns its column name. */
  addType(expression: OperationNode): string {
    let name = this.types.get(expression);
    if (name === undefined) {
      name = this.add(RawNode.create(['pg_typeof(', ')::text'], [expression]), 't');
      this.types.set(expression, name);
    }
    return name;
  }

  /** Adds `(expression)::text`, PostgreSQL's own text of the value, and returns its column name. */
  addText(expression: OperationNode): string {
    let name = this.texts.get(expression);
    if (name === undefined) {
      name = this.add(RawNode.create(['(', ')::text'], [expression]), 'x');
      this.texts.set(expression, name);
    }
    return name;
  }
}

interface Selected extends SelectionInfo {
  /** The aggregate when the selection is exactly one merged aggregate call. */
  readonly aggregate?: { readonly kind: AggregateKind; readonly node: AggregateFunctionNode };
}

function literalCount(node: OperationNode | undefined, clause: string): number | undefined {
  if (node === undefined) return undefined;
  const value = ValueNode.is(node) ? node.value : Symbol('not a literal');
  if (value === null) return undefined; // LIMIT NULL is LIMIT ALL
  if ((typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) || (typeof value === 'bigint' && value >= 0n)) {
    return Number(value);
  }
  throw unsupportedScatter(`a ${clause} that is not a non-negative integer value`, `Pass a number to .${clause.toLowerCase()}()`);
}

function describeAggregate(node: AggregateFunctionNode): { kind: AggregateKind; node: AggregateFunctionNode } {
  const func = node.func.toLowerCase();
  if (node.over !== undefined) throw unsupportedScatter(`the window function ${func}() OVER (...)`);
  if (!isAggregateKind(func)) throw unsupportedScatter(`the aggregate ${func}()`, 'Only count, sum, min, max and avg are merged');
  if (node.distinct === true) throw unsupportedScatter(`${func}(DISTINCT ...)`, 'Rows of one value may sit on several shards');
  if (node.orderBy !== undefined || node.withinGroup !== undefined) throw unsupportedScatter(`ORDER BY inside ${func}()`);
  if (node.aggregated.some((argument) => scanExpression(argument).length > 0)) throw unsupportedScatter(`a nested aggregate in ${func}()`);
  return { kind: func, node };
}

function describeSelections(node: SelectQueryNode): Selected[] {
  return (node.selections ?? []).map((selectionNode) => {
    const info = describeSelection(selectionNode);
    if (info.name?.startsWith(HIDDEN_PREFIX) === true) throw unsupportedScatter(`the column name ${info.name} (the ${HIDDEN_PREFIX} prefix is reserved)`);
    const aggregates = scanExpression(info.expression);
    if (info.expression.kind === 'AggregateFunctionNode') {
      return { ...info, aggregate: describeAggregate(info.expression as AggregateFunctionNode) };
    }
    if (aggregates.length > 0) {
      throw unsupportedScatter(`an aggregate inside the expression of ${info.name ?? 'a selection'}`, 'Select the aggregate itself and compute the expression after the query');
    }
    return info;
  });
}

function checkShape(node: SelectQueryNode, isJoinSafe: JoinSafety | undefined): boolean {
  if (node.with !== undefined) throw unsupportedScatter('a WITH (common table expression)');
  if (node.setOperations !== undefined && node.setOperations.length > 0) throw unsupportedScatter('a set operation (UNION/INTERSECT/EXCEPT)', 'Run each part as its own query');
  if (node.distinctOn !== undefined) throw unsupportedScatter('DISTINCT ON');
  if (node.having !== undefined) throw unsupportedScatter('HAVING', 'Filter the merged groups in your code');
  if (node.fetch !== undefined || node.top !== undefined) throw unsupportedScatter('FETCH/TOP', 'Use .limit()');
  if (node.explain !== undefined) throw unsupportedScatter('EXPLAIN');
  const froms = node.from?.froms ?? [];
  if (froms.length !== 1 || !isPlainTable(froms[0] as OperationNode)) {
    throw unsupportedScatter(froms.length > 1 ? 'several FROM items (a cross join)' : 'a FROM that is not one table');
  }
  for (const join of node.joins ?? []) {
    if (isJoinSafe === undefined || !isPlainTable(join.table) || !isJoinSafe(join as JoinNode)) {
      throw unsupportedScatter('a join whose rows may sit on different shards', 'Join tables sharded on the same key, on that key');
    }
    if (join.on !== undefined) scanExpression(join.on);
  }
  if (node.where !== undefined) scanExpression(node.where);
  let distinct = false;
  for (const modifier of node.frontModifiers ?? []) {
    if (modifier.modifier !== 'Distinct') throw unsupportedScatter('a raw select modifier');
    distinct = true;
  }
  for (const modifier of node.endModifiers ?? []) scanExpression(modifier);
  return distinct;
}

function direction(item: OrderByItemNode): { descending: boolean; nullsFirst: boolean } {
  const text = item.direction === undefined ? 'asc' : item.direction.kind === 'RawNode' ? (item.direction as RawNode).sqlFragments.join('').trim().toLowerCase() : '';
  if (text !== 'asc' && text !== 'desc') throw unsupportedScatter('an ORDER BY direction other than asc/desc');
  const descending = text === 'desc';
  if (item.collation !== undefined && !C_COLLATIONS.has((identifierName(item.collation.collation) ?? '').toLowerCase())) {
    throw unsupportedScatter(`ORDER BY ... COLLATE ${identifierName(item.collation.collation) ?? '?'}`, 'Only the C/POSIX collations are merged');
  }
  return { descending, nullsFirst: item.nulls === undefined ? descending : item.nulls === 'first' };
}

type Mode = MergeSpec['mode'];

/** Finds the selection an ORDER BY expression names, following PostgreSQL's rules. */
function selectionForOrder(expression: OperationNode, selected: readonly Selected[], mode: Mode): Selected | undefined {
  // An unqualified name means an output column first (ORDER BY total), then an input column.
  const ref = referencedColumn(expression);
  if (ref !== undefined && ref.table === undefined) {
    const byName = selected.find((s) => s.name === ref.column);
    if (byName !== undefined) return byName;
  }
  // The same expression as a selection: safe when its output name is unambiguous.
  const hasStar = selected.some((s) => s.all);
  const match = selected.find((s) => sameNode(s.expression, expression));
  if (match?.name === undefined || (hasStar && mode === 'rows')) return undefined;
  return selected.filter((s) => s.name === match.name).length === 1 ? match : undefined;
}

/** Where the merge finds a selection's comparable text, plus where its type comes from. */
function typedColumn(selection: Selected, extra: ShardSelections, mode: Mode): { column: string; typeColumn?: string; typeName?: string } {
  const kind = selection.aggregate?.kind;
  // Merged counts, sums and averages are computed by the merge itself, as exact decimal text (or floats).
  if (mode === 'aggregate' && (kind === 'count' || kind === 'sum' || kind === 'avg')) return { column: selection.name as string, typeName: 'numeric' };
  return { column: extra.addText(selection.expression), typeColumn: extra.addType(selection.expression) };
}

function planOrder(node: SelectQueryNode, selected: readonly Selected[], extra: ShardSelections, mode: Mode): OrderKey[] {
  return (node.orderBy?.items ?? []).map((item) => {
    const order = direction(item);
    const expression = item.orderBy;
    const selection = selectionForOrder(expression, selected, mode);
    if (selection !== undefined) return { ...typedColumn(selection, extra, mode), ...order };
    if (mode !== 'rows') {
      throw unsupportedScatter('an ORDER BY expression that is not in the select list', 'Select it and order by its alias');
    }
    if (expression.kind === 'RawNode') {
      throw unsupportedScatter('an ORDER BY on raw SQL that is not in the select list', 'Select the expression with an alias and order by the alias');
    }
    if (scanExpression(expression).length > 0) throw unsupportedScatter('an aggregate inside an ORDER BY expression');
    return { column: extra.addText(expression), typeColumn: extra.addType(expression), ...order };
  });
}

function sameGroupColumn(group: OperationNode, selection: OperationNode, singleTable: boolean): boolean {
  if (sameNode(group, selection)) return true;
  const a = referencedColumn(group);
  const b = referencedColumn(selection);
  // With one table, `status` and `orders.status` are the same column.
  return singleTable && a !== undefined && b !== undefined && a.column === b.column;
}

function planAggregate(node: SelectQueryNode, selected: readonly Selected[], extra: ShardSelections): {
  keyColumns: KeyColumn[];
  outputs: { name: string; source: OutputSource }[];
  shardSelections: SelectionNode[];
} {
  const singleTable = (node.joins ?? []).length === 0;
  const groupItems = node.groupBy?.items ?? [];
  const names = new Set<string>();
  for (const s of selected) {
    if (s.all) throw unsupportedScatter('select * in an aggregate query', 'Select the group columns and aggregates by name');
    if (s.name === undefined || names.has(s.name)) {
      throw unsupportedScatter(s.name === undefined ? 'an unnamed expression in an aggregate query' : `two result columns named ${s.name}`, 'Give each selection a unique alias');
    }
    names.add(s.name);
  }
  const keyColumns = groupItems.map((item) => {
    if (scanExpression(item.groupBy).length > 0) throw unsupportedScatter('an aggregate in GROUP BY');
    const selection = selected.find((s) => s.aggregate === undefined && sameGroupColumn(item.groupBy, s.expression, singleTable));
    if (selection === undefined) {
      throw unsupportedScatter('a GROUP BY expression that is not in the select list', 'Select every GROUP BY expression');
    }
    return { column: selection.name as string, typeColumn: extra.addType(selection.expression), textColumn: extra.addText(selection.expression) };
  });
  const shardSelections: SelectionNode[] = [];
  const outputs = selected.map((s): { name: string; source: OutputSource } => {
    const name = s.name as string;
    if (s.aggregate === undefined) {
      shardSelections.push(s.node);
      return { name, source: { kind: 'first', column: name } };
    }
    const { kind, node: aggregate } = s.aggregate;
    if (kind === 'avg') {
      // avg = sum / count, merged exactly; the count must skip the same nulls as avg does.
      const sum = extra.add(Object.freeze({ ...aggregate, func: 'sum' }), 's');
      const count = extra.add(Object.freeze({ ...aggregate, func: 'count' }), 'c');
      return { name, source: { kind: 'aggregate', aggregate: kind, columns: { value: sum, count } } };
    }
    shardSelections.push(s.node);
    const columns = kind === 'min' || kind === 'max' ? { value: name, type: extra.addType(aggregate), text: extra.addText(aggregate) } : { value: name };
    return { name, source: { kind: 'aggregate', aggregate: kind, columns } };
  });
  return { keyColumns, outputs, shardSelections };
}

/**
 * Plans a scatter of `node` over every shard: the query each shard runs and the merge of their
 * rows. Cheap (one walk of the tree) so it can run on every routed query.
 *
 * @throws RoutingError with code `E_UNSUPPORTED_SCATTER` naming the construct that cannot be
 *   merged correctly and how to fix the query.
 */
export function planScatter(node: OperationNode, options: ScatterPlanOptions = {}): ScatterPlan {
  if (!SelectQueryNode.is(node)) throw unsupportedScatter(`a ${node.kind} (only SELECT can scatter)`);
  const distinct = checkShape(node, options.isJoinSafe);
  const selected = describeSelections(node);
  const orderAggregates = (node.orderBy?.items ?? []).some((item) => scanExpression(item.orderBy).length > 0);
  const mode: Mode =
    node.groupBy !== undefined || orderAggregates || selected.some((s) => s.aggregate !== undefined) ? 'aggregate' : distinct ? 'distinct' : 'rows';
  const limit = literalCount(node.limit?.limit, 'LIMIT');
  const offset = literalCount(node.offset?.offset, 'OFFSET') ?? 0;
  const extra = new ShardSelections();

  const keyColumns: KeyColumn[] = [];
  if (mode === 'aggregate') {
    const planned = planAggregate(node, selected, extra);
    const orderKeys = planOrder(node, selected, extra, mode);
    let shard = SelectQueryNode.cloneWithoutOrderBy(SelectQueryNode.cloneWithoutOffset(SelectQueryNode.cloneWithoutLimit(node)));
    shard = SelectQueryNode.cloneWithSelections(SelectQueryNode.cloneWithoutSelections(shard), [...planned.shardSelections, ...extra.selections]);
    return createPlan(shard, { mode, orderKeys, limit, offset, hidden: extra.hidden, keyColumns: planned.keyColumns, outputs: planned.outputs, singleGroup: node.groupBy === undefined, compareText: options.compareText ?? compareCodePoints });
  }
  if (mode === 'distinct') {
    for (const s of selected) {
      if (s.all || s.name === undefined || selected.filter((t) => t.name === s.name).length > 1) {
        throw unsupportedScatter('DISTINCT over * or over unnamed/duplicate columns', 'Select named columns');
      }
      keyColumns.push({ column: s.name, typeColumn: extra.addType(s.expression), textColumn: extra.addText(s.expression) });
    }
  }
  const orderKeys = planOrder(node, selected, extra, mode);
  let shardNode = SelectQueryNode.cloneWithoutOffset(node);
  // A DISTINCT shard query keeps its LIMIT only if every distinct value prints one way: `1.0` and
  // `1.00` (or `1 mon` and `30 days`) are one value but two rows once their text is selected, and
  // a limit could then cut off distinct values the merge needs.
  if (mode === 'distinct') shardNode = SelectQueryNode.cloneWithoutLimit(shardNode);
  else if (limit !== undefined) shardNode = SelectQueryNode.cloneWithLimit(shardNode, LimitNode.create(ValueNode.create(limit + offset)));
  if (extra.selections.length > 0) shardNode = SelectQueryNode.cloneWithSelections(shardNode, extra.selections);
  return createPlan(shardNode, { mode, orderKeys, limit, offset, hidden: extra.hidden, keyColumns, outputs: [], singleGroup: false, compareText: options.compareText ?? compareCodePoints });
}

function createPlan(shardNode: SelectQueryNode, spec: MergeSpec): ScatterPlan {
  const orderKeys = Object.freeze(spec.orderKeys.map((k) => Object.freeze(k)));
  // The row order is built once per plan (plans are reused, see ScatterStatements); a merge with enum labels builds its own.
  const frozen: MergeSpec = Object.freeze({ ...spec, orderKeys, order: orderKeys.length > 0 ? rowOrder(orderKeys, spec.compareText) : undefined });
  return Object.freeze({
    shardNode,
    streamable: spec.mode === 'rows',
    merge: (rowsPerShard: readonly (readonly Row[])[], types?: TypeLookup) => MERGERS[frozen.mode](rowsPerShard, types === undefined ? frozen : { ...frozen, types, order: undefined }),
    typeColumns: Object.freeze(typeColumnsOf(frozen)),
    mergeStreams: (streams: readonly AsyncIterable<Row>[]) => mergeRowStreams(streams, frozen),
    mergeChunks: (streams: readonly AsyncIterable<readonly Row[]>[], chunkSize: number) => mergeChunkStreams(streams, frozen, chunkSize),
  });
}

function typeColumnsOf(spec: MergeSpec): string[] {
  const columns = new Set<string>();
  for (const key of spec.orderKeys) if (key.typeColumn !== undefined) columns.add(key.typeColumn);
  for (const key of spec.keyColumns) columns.add(key.typeColumn);
  for (const { source } of spec.outputs) if (source.kind === 'aggregate' && source.columns.type !== undefined) columns.add(source.columns.type);
  return [...columns];
}
