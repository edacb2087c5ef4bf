/**
 * Inspection of Kysely operation nodes for scatter planning: which node kinds can run unchanged on
 * every shard, output column names, structural equality of expressions, and the refusal error.
 *
 * @packageDocumentation
 */
import {
  AggregateFunctionNode,
  AliasNode,
  ColumnNode,
  FunctionNode,
  IdentifierNode,
  ReferenceNode,
  SelectAllNode,
  TableNode,
  type JoinNode,
  type OperationNode,
  type OperationNodeKind,
  type RawNode,
  type SelectionNode,
} from 'kysely';
import { ErrorCodes } from '../../kernel/errors';
import { RoutingError } from '../sharding-errors';

/** Raised for every query shape whose scatter result could differ from one database's. */
export function unsupportedScatter(what: string, hint?: string): RoutingError {
  return new RoutingError(
    ErrorCodes.UNSUPPORTED_SCATTER,
    `Cannot scatter this query across shards: ${what} cannot be merged correctly.` +
      (hint === undefined ? '' : ` ${hint}.`) +
      ' Add the shard key to the WHERE clause, or run it on one shard with withShard(id).',
    { unsupported: what },
  );
}

/** PostgreSQL's built-in aggregate and window functions; a call to one is never a per-row value. */
const AGGREGATE_OR_WINDOW_FUNCTIONS = [
  'count', 'sum', 'avg', 'min', 'max', 'array_agg', 'string_agg', 'bool_and', 'bool_or', 'every',
  'bit_and', 'bit_or', 'bit_xor', 'json_agg', 'jsonb_agg', 'json_object_agg', 'jsonb_object_agg',
  'json_objectagg', 'json_arrayagg', 'xmlagg', 'stddev', 'stddev_pop', 'stddev_samp', 'variance',
  'var_pop', 'var_samp', 'corr', 'covar_pop', 'covar_samp', 'regr_avgx', 'regr_avgy', 'regr_count',
  'regr_intercept', 'regr_r2', 'regr_slope', 'regr_sxx', 'regr_sxy', 'regr_syy', 'percentile_cont',
  'percentile_disc', 'mode', 'rank', 'dense_rank', 'percent_rank', 'cume_dist', 'range_agg',
  'range_intersect_agg', 'any_value', 'grouping', 'row_number', 'ntile', 'lag', 'lead',
  'first_value', 'last_value', 'nth_value',
] as const;
const AGGREGATE_NAMES: ReadonlySet<string> = new Set(AGGREGATE_OR_WINDOW_FUNCTIONS);
const RAW_AGGREGATE_CALL = new RegExp(`\\b(?:${AGGREGATE_OR_WINDOW_FUNCTIONS.join('|')})\\s*\\(`, 'i');
const RAW_SUBQUERY_OR_WINDOW = /\b(?:select|over|window|values)\b/i;

/** How the scan treats one node kind: look inside, stop (a literal), refuse with a reason, or a custom check. */
type NodeCheck = 'descend' | 'leaf' | { readonly refuse: string } | ((node: OperationNode, scan: Scan) => void);

/** What a scan of an expression found. */
export interface Scan {
  /** Aggregate function calls found (kysely's `eb.fn.count(...)` and friends). */
  readonly aggregates: AggregateFunctionNode[];
}

const refuse = (what: string): NodeCheck => ({ refuse: what });
const statement = refuse('a nested statement');

/**
 * Every node kind, so a kind added by a newer Kysely fails to compile here until someone decides
 * whether it is safe on every shard.
 */
const NODE_CHECKS: Readonly<Record<OperationNodeKind, NodeCheck>> = Object.freeze({
  IdentifierNode: 'leaf',
  SchemableIdentifierNode: 'leaf',
  RawNode: (node, scan) => checkRaw(node as RawNode, scan),
  SelectQueryNode: refuse('a subquery'),
  SelectionNode: 'descend',
  ReferenceNode: 'leaf',
  ColumnNode: 'leaf',
  TableNode: 'leaf',
  AliasNode: 'descend',
  FromNode: 'descend',
  SelectAllNode: 'leaf',
  AndNode: 'descend',
  OrNode: 'descend',
  ParensNode: 'descend',
  ValueNode: 'leaf',
  ValueListNode: 'descend',
  PrimitiveValueListNode: 'leaf',
  JoinNode: refuse('a join'),
  OperatorNode: 'leaf',
  WhereNode: 'descend',
  InsertQueryNode: statement,
  DeleteQueryNode: statement,
  ReturningNode: statement,
  CreateTableNode: statement,
  ColumnDefinitionNode: statement,
  AddColumnNode: statement,
  DropTableNode: statement,
  DataTypeNode: 'leaf',
  OrderByNode: 'descend',
  OrderByItemNode: 'descend',
  GroupByNode: 'descend',
  GroupByItemNode: 'descend',
  UpdateQueryNode: statement,
  ColumnUpdateNode: statement,
  LimitNode: 'descend',
  OffsetNode: 'descend',
  OnConflictNode: statement,
  OnDuplicateKeyNode: statement,
  CreateIndexNode: statement,
  DropIndexNode: statement,
  ListNode: 'descend',
  ReferencesNode: statement,
  PrimaryKeyConstraintNode: statement,
  UniqueConstraintNode: statement,
  CheckConstraintNode: statement,
  ForeignKeyConstraintNode: statement,
  WithNode: refuse('a WITH (common table expression)'),
  CommonTableExpressionNode: refuse('a WITH (common table expression)'),
  HavingNode: refuse('HAVING'),
  CreateSchemaNode: statement,
  DropSchemaNode: statement,
  AlterTableNode: statement,
  ModifyColumnNode: statement,
  DropColumnNode: statement,
  RenameColumnNode: statement,
  AlterColumnNode: statement,
  AddConstraintNode: statement,
  DropConstraintNode: statement,
  CreateViewNode: statement,
  RefreshMaterializedViewNode: statement,
  DropViewNode: statement,
  GeneratedNode: statement,
  DefaultValueNode: statement,
  OnNode: 'descend',
  ValuesNode: refuse('a VALUES list (every shard would return it)'),
  CommonTableExpressionNameNode: refuse('a WITH (common table expression)'),
  SelectModifierNode: 'descend',
  CreateTypeNode: statement,
  DropTypeNode: statement,
  ExplainNode: refuse('EXPLAIN'),
  DefaultInsertValueNode: statement,
  AggregateFunctionNode: (node, scan) => {
    scan.aggregates.push(node as AggregateFunctionNode);
    descend(node, scan);
  },
  OverNode: refuse('a window function (OVER)'),
  PartitionByNode: refuse('a window function (OVER)'),
  PartitionByItemNode: refuse('a window function (OVER)'),
  SetOperationNode: refuse('a set operation (UNION/INTERSECT/EXCEPT)'),
  BinaryOperationNode: 'descend',
  UnaryOperationNode: 'descend',
  UsingNode: refuse('a join'),
  FunctionNode: (node, scan) => {
    const { func } = node as FunctionNode;
    if (AGGREGATE_NAMES.has(func.toLowerCase())) {
      throw unsupportedScatter(`the aggregate or window function ${func}() called as a plain function`, `Use eb.fn.${func}() (a real aggregate node) if it is count/sum/min/max/avg`);
    }
    descend(node, scan);
  },
  CaseNode: 'descend',
  WhenNode: 'descend',
  JSONReferenceNode: 'descend',
  JSONPathNode: 'descend',
  JSONPathLegNode: 'leaf',
  JSONOperatorChainNode: 'descend',
  TupleNode: 'descend',
  MergeQueryNode: statement,
  MatchedNode: statement,
  AddIndexNode: statement,
  CastNode: 'descend',
  FetchNode: refuse('FETCH'),
  TopNode: refuse('TOP'),
  OutputNode: statement,
  OrActionNode: statement,
  CollateNode: 'leaf',
  RenameConstraintNode: statement,
});

function checkRaw(node: RawNode, scan: Scan): void {
  const text = node.sqlFragments.join(' ');
  if (RAW_SUBQUERY_OR_WINDOW.test(text) || RAW_AGGREGATE_CALL.test(text)) {
    throw unsupportedScatter(
      `raw SQL that contains a subquery, window or aggregate (${JSON.stringify(text.slice(0, 60))})`,
      'Build aggregates with eb.fn.count/sum/min/max/avg so they can be merged',
    );
  }
  for (const parameter of node.parameters) scanNode(parameter, scan);
}

/** Scans the children of a node (every property that holds a node or a list of nodes). */
function descend(node: OperationNode, scan: Scan): void {
  // Every field, not a list per kind: a field a newer Kysely adds is scanned (and refused if unknown) too.
  for (const value of Object.values(node)) {
    if (Array.isArray(value)) {
      for (const item of value) if (isNode(item)) scanNode(item, scan);
    } else if (isNode(value)) {
      scanNode(value, scan);
    }
  }
}

function isNode(value: unknown): value is OperationNode {
  return typeof value === 'object' && value !== null && typeof (value as { kind?: unknown }).kind === 'string';
}

/** Scans an expression, throwing for anything that is not safe to run unchanged on every shard. */
export function scanNode(node: OperationNode, scan: Scan): void {
  const check = NODE_CHECKS[node.kind] as NodeCheck | undefined;
  if (check === undefined) throw unsupportedScatter(`the query node ${node.kind}`);
  if (check === 'leaf') return;
  if (check === 'descend') return descend(node, scan);
  if (typeof check === 'function') return check(node, scan);
  throw unsupportedScatter(check.refuse);
}

/** Scans an expression and returns the aggregates it contains. */
export function scanExpression(node: OperationNode): AggregateFunctionNode[] {
  const scan: Scan = { aggregates: [] };
  scanNode(node, scan);
  return scan.aggregates;
}

/** Name of an identifier-like node, or undefined. */
export function identifierName(node: OperationNode | undefined): string | undefined {
  return node !== undefined && IdentifierNode.is(node) ? node.name : undefined;
}

/** The column a reference names when it is a plain (unqualified or qualified) column reference. */
export function referencedColumn(node: OperationNode): { column: string; table?: string } | undefined {
  if (!ReferenceNode.is(node) || !ColumnNode.is(node.column)) return undefined;
  const column = node.column.column.name;
  const table = node.table?.table.identifier.name;
  return table === undefined ? { column } : { column, table };
}

/** A selection split into its expression and the column name PostgreSQL gives it. */
export interface SelectionInfo {
  readonly node: SelectionNode;
  /** The expression without its alias. */
  readonly expression: OperationNode;
  /** Output column name; undefined for `*` / `t.*` and for unnamed expressions (`?column?`). */
  readonly name: string | undefined;
  /** `*` or `t.*`. */
  readonly all: boolean;
}

/** Splits a selection into expression and output name, following PostgreSQL's naming rules. */
export function describeSelection(node: SelectionNode): SelectionInfo {
  const selection: OperationNode = node.selection;
  if (SelectAllNode.is(selection)) return { node, expression: selection, name: undefined, all: true };
  if (AliasNode.is(selection)) return { node, expression: selection.node, name: identifierName(selection.alias), all: false };
  if (ReferenceNode.is(selection)) {
    return { node, expression: selection, name: referencedColumn(selection)?.column, all: SelectAllNode.is(selection.column) };
  }
  if (AggregateFunctionNode.is(selection) || FunctionNode.is(selection)) {
    return { node, expression: selection, name: selection.func.toLowerCase(), all: false };
  }
  return { node, expression: selection, name: undefined, all: false };
}

/** Deep structural equality of two node trees (the same SQL when compiled; a bind parameter equals nothing). */
export function sameNode(a: unknown, b: unknown): boolean {
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return a === b;
  // PostgreSQL compares `$1` and `$2` as different expressions whatever their values (and so must the
  // plan: it is reused for every tree with the same SQL text); an inlined value is part of the text.
  if (isParameter(a) || isParameter(b)) return false;
  if (a === b) return true;
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const aKeys = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const bKeys = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (aKeys.length !== bKeys.length) return false;
  return aKeys.every((k) => sameNode((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Whether a node is sent as bind parameters (a value that is not inlined, or a list of values). */
function isParameter(node: object): boolean {
  const kind = (node as { kind?: unknown }).kind;
  return (kind === 'ValueNode' && (node as { immediate?: boolean }).immediate !== true) || kind === 'PrimitiveValueListNode';
}

/** Whether a FROM item is a plain table, optionally aliased (not a subquery, function or VALUES). */
export function isPlainTable(node: OperationNode): boolean {
  return TableNode.is(node) || (AliasNode.is(node) && TableNode.is(node.node));
}

/** Decides whether a join may run unchanged on every shard (co-located on the shard key). */
export type JoinSafety = (join: JoinNode) => boolean;
