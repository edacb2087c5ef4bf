/**
 * Scatter planning: for a SELECT with no shard key on a `scatter` table, derive the query every
 * shard runs and a pure merge that turns the shards' rows into exactly the rows one database
 * holding all rows would return. No I/O happens here; the driver compiles {@link ScatterPlan.shardNode},
 * runs it on every shard and hands the rows (in shard order) to {@link ScatterPlan.merge} or the
 * row streams to {@link ScatterPlan.mergeStreams}.
 *
 * How the shard query differs from the original:
 * - LIMIT n OFFSET m becomes LIMIT n+m (OFFSET applies after merging).
 * - Each value the merge compares (ORDER BY, DISTINCT, GROUP BY keys, min/max) gets a hidden
 *   `(expr)::text` column: the merge compares PostgreSQL's text by the type's exact order
 *   (microseconds of a timestamp, digits of an int8 or numeric), never the value node-postgres
 *   parsed. The type is the one the shard's row description gives for the selected expression
 *   (no extra column); an ORDER BY expression that is not selected (plain selects only), or any
 *   after a `*`, also gets a hidden copy of itself whose field gives its type.
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
 * exactly (jsonb, money, ranges, …; see scatter-compare). A domain compares as its base type (the row
 * description names the base type), an enum by its labels' order.
 *
 * Limits of what can be detected: an aggregate that is user-defined and called through raw SQL or
 * `eb.fn(...)`, and text under a non-C database collation (the merge checks each shard's order and
 * fails on a mismatch; pass `compareText` to use another text order).
 *
 * @packageDocumentation
 */
import {
  AggregateFunctionNode,
  type JoinNode,
  LimitNode,
  type OperationNode,
  type OrderByItemNode,
  type RawNode,
  type SelectionNode,
  SelectQueryNode,
  ValueNode,
} from 'kysely';
import { type AggregateKind, isAggregateKind } from './scatter-aggregate';
import { compareCodePoints, type TextComparator, type TypeField, type TypeLookup } from './scatter-compare';
import { type FieldLayout, HIDDEN_PREFIX, ShardSelections } from './scatter-selections';

export type { FieldLayout } from './scatter-selections';
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
   * would return. `types` gives the type of each of {@link ScatterPlan.typeFields} (needed when
   * there are any and the shards returned rows) and the labels of enum types.
   */
  merge(rowsPerShard: readonly (readonly Row[])[], types?: TypeLookup): Row[];
  /** How many fields a shard's row description has (`visible` is `undefined` after a `*`), to find {@link ScatterPlan.typeFields} in it. */
  readonly fields: FieldLayout;
  /** The fields whose types (from the shards' row descriptions) the merge needs: see {@link TypeLookup}. */
  readonly typeFields: readonly TypeField[];
  /** Whether {@link ScatterPlan.mergeStreams} streams (plain selects); otherwise it buffers every shard's rows first. */
  readonly streamable: boolean;
  /**
   * Merges per-shard row streams (each in the shard query's order) honouring LIMIT/OFFSET; stops
   * and closes every input once the limit is reached, when the consumer stops, or on an error.
   */
  mergeStreams(streams: readonly AsyncIterable<Row>[], types?: TypeLookup): AsyncIterable<Row>;
  /** {@link ScatterPlan.mergeStreams} over chunks of rows (as cursors read them), yielding chunks of up to `chunkSize` rows. */
  mergeChunks(streams: readonly AsyncIterable<readonly Row[]>[], chunkSize: number, types?: TypeLookup): AsyncIterable<Row[]>;
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

const C_COLLATIONS: ReadonlySet<string> = new Set(['c', 'posix', 'ucs_basic']);

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
function typedColumn(selection: Selected, extra: ShardSelections, mode: Mode): { column: string; typeField?: TypeField; typeName?: string } {
  const kind = selection.aggregate?.kind;
  // Merged counts, sums and averages are computed by the merge itself, as exact decimal text (or floats).
  if (mode === 'aggregate' && (kind === 'count' || kind === 'sum' || kind === 'avg')) return { column: selection.name as string, typeName: 'numeric' };
  return { column: extra.addText(selection.expression), typeField: extra.typeField(selection.expression, selection.node) };
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
    return { column: extra.addText(expression), typeField: extra.typeField(expression), ...order };
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
    return { column: selection.name as string, typeField: extra.typeField(selection.expression, selection.node), textColumn: extra.addText(selection.expression) };
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
      // avg = sum / count, merged exactly; the count must skip the same nulls as avg does. The
      // partial sum's own column gives its type (integer and numeric sums make a numeric avg).
      const sumNode = Object.freeze({ ...aggregate, func: 'sum' });
      const { name: sum, field: typeField } = extra.addTyped(sumNode, 's');
      const count = extra.add(Object.freeze({ ...aggregate, func: 'count' }), 'c');
      return { name, source: { kind: 'aggregate', aggregate: kind, columns: { value: sum, count, typeField, text: extra.addText(sumNode) } } };
    }
    shardSelections.push(s.node);
    // Partials merged from PostgreSQL's text of them: min/max compare it, sum adds it. A count
    // needs none: any int8 parser gives a count (below 2^53) exactly.
    const columns = kind === 'count' ? { value: name } : { value: name, typeField: extra.typeField(aggregate, s.node), text: extra.addText(aggregate) };
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
  // The shard query's own fields: an aggregate query's selections less its avg()s (run as hidden
  // sum and count). Unknown after a `*` or raw SQL (`sql\`t.*\``, `sql\`a, b\``), which may be several.
  const widthUnknown = selected.some((s) => s.all || s.expression.kind === 'RawNode');
  const visible = widthUnknown ? undefined : selected.filter((s) => mode !== 'aggregate' || s.aggregate?.kind !== 'avg').map((s) => s.node);
  const extra = new ShardSelections(visible);

  const keyColumns: KeyColumn[] = [];
  if (mode === 'aggregate') {
    const planned = planAggregate(node, selected, extra);
    const orderKeys = planOrder(node, selected, extra, mode);
    let shard = SelectQueryNode.cloneWithoutOrderBy(SelectQueryNode.cloneWithoutOffset(SelectQueryNode.cloneWithoutLimit(node)));
    shard = SelectQueryNode.cloneWithSelections(SelectQueryNode.cloneWithoutSelections(shard), [...planned.shardSelections, ...extra.selections]);
    return createPlan(shard, extra.layout(), { mode, orderKeys, limit, offset, hidden: extra.hidden, keyColumns: planned.keyColumns, outputs: planned.outputs, singleGroup: node.groupBy === undefined, compareText: options.compareText ?? compareCodePoints });
  }
  if (mode === 'distinct') {
    for (const s of selected) {
      if (s.all || s.name === undefined || selected.filter((t) => t.name === s.name).length > 1) {
        throw unsupportedScatter('DISTINCT over * or over unnamed/duplicate columns', 'Select named columns');
      }
      keyColumns.push({ column: s.name, typeField: extra.typeField(s.expression, s.node), textColumn: extra.addText(s.expression) });
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
  return createPlan(shardNode, extra.layout(), { mode, orderKeys, limit, offset, hidden: extra.hidden, keyColumns, outputs: [], singleGroup: false, compareText: options.compareText ?? compareCodePoints });
}

function createPlan(shardNode: SelectQueryNode, fields: FieldLayout, spec: MergeSpec): ScatterPlan {
  const orderKeys = Object.freeze(spec.orderKeys.map((k) => Object.freeze(k)));
  const typeFields = Object.freeze(typeFieldsOf(spec));
  // A row order whose types the plan knows is built once per plan (plans are reused, see
  // ScatterStatements); one whose types come from the shards is built per merge.
  const typed = orderKeys.every((key) => key.typeName !== undefined);
  const frozen: MergeSpec = Object.freeze({ ...spec, orderKeys, order: typed && orderKeys.length > 0 ? rowOrder(orderKeys, spec.compareText) : undefined });
  const withTypes = (types: TypeLookup | undefined): MergeSpec => (types === undefined ? frozen : { ...frozen, types, order: typed ? frozen.order : undefined });
  return Object.freeze({
    shardNode,
    streamable: spec.mode === 'rows',
    fields,
    typeFields,
    merge: (rowsPerShard: readonly (readonly Row[])[], types?: TypeLookup) => MERGERS[frozen.mode](rowsPerShard, withTypes(types)),
    mergeStreams: (streams: readonly AsyncIterable<Row>[], types?: TypeLookup) => mergeRowStreams(streams, withTypes(types)),
    mergeChunks: (streams: readonly AsyncIterable<readonly Row[]>[], chunkSize: number, types?: TypeLookup) => mergeChunkStreams(streams, withTypes(types), chunkSize),
  });
}

function typeFieldsOf(spec: MergeSpec): TypeField[] {
  const fields = new Set<TypeField>();
  for (const key of spec.orderKeys) if (key.typeField !== undefined) fields.add(key.typeField);
  for (const key of spec.keyColumns) fields.add(key.typeField);
  for (const { source } of spec.outputs) if (source.kind === 'aggregate' && source.columns.typeField !== undefined) fields.add(source.columns.typeField);
  return [...fields];
}
