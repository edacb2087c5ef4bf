/**
 * How the query analysis walks Kysely's operation-node tree to find every nested query: one
 * handler per node kind (a kind that a newer Kysely adds fails to compile here until someone says
 * where its queries can hide). A handler visits the children that may contain a query and skips
 * those that cannot (identifiers, tables, columns, literal values, data types); the four query
 * kinds are handed to the analysis as scopes of their own.
 */
import type {
  AddColumnNode, AddConstraintNode, AddIndexNode, AggregateFunctionNode, AliasNode, AlterColumnNode, AlterTableNode, AndNode,
  BinaryOperationNode, CaseNode, CastNode, CheckConstraintNode, CollateNode, ColumnDefinitionNode, ColumnNode, ColumnUpdateNode,
  CommonTableExpressionNameNode, CommonTableExpressionNode, CreateIndexNode, CreateSchemaNode, CreateTableNode, CreateTypeNode,
  CreateViewNode, DataTypeNode, DefaultInsertValueNode, DefaultValueNode, DeleteQueryNode, DropColumnNode, DropConstraintNode,
  DropIndexNode, DropSchemaNode, DropTableNode, DropTypeNode, DropViewNode, ExplainNode, FetchNode, ForeignKeyConstraintNode,
  FromNode, FunctionNode, GeneratedNode, GroupByItemNode, GroupByNode, HavingNode, IdentifierNode, InsertQueryNode, JoinNode,
  JSONOperatorChainNode, JSONPathLegNode, JSONPathNode, JSONReferenceNode, LimitNode, ListNode, MatchedNode, MergeQueryNode,
  ModifyColumnNode, OffsetNode, OnConflictNode, OnDuplicateKeyNode, OnNode, OperationNode, OperationNodeKind, OperatorNode,
  OrActionNode, OrderByItemNode, OrderByNode, OrNode, OutputNode, OverNode, ParensNode, PartitionByItemNode, PartitionByNode,
  PrimaryKeyConstraintNode, PrimitiveValueListNode, RawNode, ReferenceNode, ReferencesNode, RefreshMaterializedViewNode,
  RenameColumnNode, RenameConstraintNode, ReturningNode, SchemableIdentifierNode, SelectAllNode, SelectionNode,
  SelectModifierNode, SelectQueryNode, SetOperationNode, TableNode, TopNode, TupleNode, UnaryOperationNode, UniqueConstraintNode,
  UpdateQueryNode, UsingNode, ValueListNode, ValueNode, ValuesNode, WhenNode, WhereNode, WithNode,
} from 'kysely';

/** A statement with a scope of its own: the analysis reads its tables and key constraints. */
export type QueryNode = SelectQueryNode | InsertQueryNode | UpdateQueryNode | DeleteQueryNode;

/** What the walk reports each nested query to. */
export interface QueryWalker {
  /** A nested SELECT/INSERT/UPDATE/DELETE: a scope of its own (the walk does not enter it). */
  scope(node: QueryNode): void;
}

/** Every node kind with its node type. */
interface NodeOf {
  AddColumnNode: AddColumnNode; AddConstraintNode: AddConstraintNode; AddIndexNode: AddIndexNode;
  AggregateFunctionNode: AggregateFunctionNode; AliasNode: AliasNode; AlterColumnNode: AlterColumnNode;
  AlterTableNode: AlterTableNode; AndNode: AndNode; BinaryOperationNode: BinaryOperationNode; CaseNode: CaseNode;
  CastNode: CastNode; CheckConstraintNode: CheckConstraintNode; CollateNode: CollateNode;
  ColumnDefinitionNode: ColumnDefinitionNode; ColumnNode: ColumnNode; ColumnUpdateNode: ColumnUpdateNode;
  CommonTableExpressionNameNode: CommonTableExpressionNameNode; CommonTableExpressionNode: CommonTableExpressionNode;
  CreateIndexNode: CreateIndexNode; CreateSchemaNode: CreateSchemaNode; CreateTableNode: CreateTableNode;
  CreateTypeNode: CreateTypeNode; CreateViewNode: CreateViewNode; DataTypeNode: DataTypeNode;
  DefaultInsertValueNode: DefaultInsertValueNode; DefaultValueNode: DefaultValueNode; DeleteQueryNode: DeleteQueryNode;
  DropColumnNode: DropColumnNode; DropConstraintNode: DropConstraintNode; DropIndexNode: DropIndexNode;
  DropSchemaNode: DropSchemaNode; DropTableNode: DropTableNode; DropTypeNode: DropTypeNode; DropViewNode: DropViewNode;
  ExplainNode: ExplainNode; FetchNode: FetchNode; ForeignKeyConstraintNode: ForeignKeyConstraintNode; FromNode: FromNode;
  FunctionNode: FunctionNode; GeneratedNode: GeneratedNode; GroupByItemNode: GroupByItemNode; GroupByNode: GroupByNode;
  HavingNode: HavingNode; IdentifierNode: IdentifierNode; InsertQueryNode: InsertQueryNode; JoinNode: JoinNode;
  JSONOperatorChainNode: JSONOperatorChainNode; JSONPathLegNode: JSONPathLegNode; JSONPathNode: JSONPathNode;
  JSONReferenceNode: JSONReferenceNode; LimitNode: LimitNode; ListNode: ListNode; MatchedNode: MatchedNode;
  MergeQueryNode: MergeQueryNode; ModifyColumnNode: ModifyColumnNode; OffsetNode: OffsetNode; OnConflictNode: OnConflictNode;
  OnDuplicateKeyNode: OnDuplicateKeyNode; OnNode: OnNode; OperatorNode: OperatorNode; OrActionNode: OrActionNode;
  OrderByItemNode: OrderByItemNode; OrderByNode: OrderByNode; OrNode: OrNode; OutputNode: OutputNode; OverNode: OverNode;
  ParensNode: ParensNode; PartitionByItemNode: PartitionByItemNode; PartitionByNode: PartitionByNode;
  PrimaryKeyConstraintNode: PrimaryKeyConstraintNode; PrimitiveValueListNode: PrimitiveValueListNode; RawNode: RawNode;
  ReferenceNode: ReferenceNode; ReferencesNode: ReferencesNode; RefreshMaterializedViewNode: RefreshMaterializedViewNode;
  RenameColumnNode: RenameColumnNode; RenameConstraintNode: RenameConstraintNode; ReturningNode: ReturningNode;
  SchemableIdentifierNode: SchemableIdentifierNode; SelectAllNode: SelectAllNode; SelectionNode: SelectionNode;
  SelectModifierNode: SelectModifierNode; SelectQueryNode: SelectQueryNode; SetOperationNode: SetOperationNode;
  TableNode: TableNode; TopNode: TopNode; TupleNode: TupleNode; UnaryOperationNode: UnaryOperationNode;
  UniqueConstraintNode: UniqueConstraintNode; UpdateQueryNode: UpdateQueryNode; UsingNode: UsingNode;
  ValueListNode: ValueListNode; ValueNode: ValueNode; ValuesNode: ValuesNode; WhenNode: WhenNode; WhereNode: WhereNode;
  WithNode: WithNode;
}

/**
 * One entry per kind: a handler typed by its node, or `null` for kinds whose children can never
 * hold a query (names, literals, types, actions without expressions). Most nodes of a query are
 * such leaves; `null` saves a call for each.
 */
type WalkHandlers = { readonly [K in OperationNodeKind]: ((node: NodeOf[K], walker: QueryWalker) => void) | null };

// Compile-time check that each entry of NodeOf is the node of its own kind: a wrong entry makes this `false`.
type MismatchedKinds = { [K in OperationNodeKind]: NodeOf[K]['kind'] extends K ? never : K }[OperationNodeKind];
const kindsMatch: [MismatchedKinds] extends [never] ? true : false = true;
void kindsMatch;

function one(node: OperationNode | undefined, walker: QueryWalker): void {
  if (node !== undefined) walkNode(node, walker);
}

function each(nodes: readonly OperationNode[] | undefined, walker: QueryWalker): void {
  // Index loops, not for…of: an array iterator per node would be most of this walk's garbage.
  if (nodes !== undefined) for (let i = 0; i < nodes.length; i++) walkNode(nodes[i]!, walker);
}

const WALK: WalkHandlers = Object.freeze({
  // Queries are scopes; the analysis walks their children (walkQueryChildren) once it has read them.
  SelectQueryNode: (node, w) => w.scope(node),
  InsertQueryNode: (node, w) => w.scope(node),
  UpdateQueryNode: (node, w) => w.scope(node),
  DeleteQueryNode: (node, w) => w.scope(node),
  MergeQueryNode: (node, w) => {
    one(node.with, w);
    one(node.into, w);
    one(node.using, w);
    each(node.whens, w);
    one(node.returning, w);
    one(node.output, w);
    each(node.endModifiers, w);
  },
  // Leaves, and nodes made only of names.
  IdentifierNode: null,
  SchemableIdentifierNode: null,
  ValueNode: null,
  PrimitiveValueListNode: null,
  OperatorNode: null,
  TableNode: null,
  ColumnNode: null,
  ReferenceNode: null,
  SelectAllNode: null,
  DefaultInsertValueNode: null,
  DataTypeNode: null,
  CollateNode: null,
  CommonTableExpressionNameNode: null,
  CreateSchemaNode: null,
  DropColumnNode: null,
  DropConstraintNode: null,
  DropIndexNode: null,
  DropSchemaNode: null,
  DropTableNode: null,
  DropTypeNode: null,
  DropViewNode: null,
  FetchNode: null,
  JSONOperatorChainNode: null,
  JSONPathLegNode: null,
  JSONPathNode: null,
  MatchedNode: null,
  OrActionNode: null,
  PartitionByItemNode: null,
  PrimaryKeyConstraintNode: null,
  ReferencesNode: null,
  RefreshMaterializedViewNode: null,
  RenameColumnNode: null,
  RenameConstraintNode: null,
  TopNode: null,
  UniqueConstraintNode: null,
  // Expressions.
  SelectionNode: (node, w) => walkNode(node.selection, w),
  AliasNode: (node, w) => {
    walkNode(node.node, w);
    walkNode(node.alias, w);
  },
  AndNode: (node, w) => {
    walkNode(node.left, w);
    walkNode(node.right, w);
  },
  OrNode: (node, w) => {
    walkNode(node.left, w);
    walkNode(node.right, w);
  },
  ParensNode: (node, w) => walkNode(node.node, w),
  BinaryOperationNode: (node, w) => {
    walkNode(node.leftOperand, w);
    walkNode(node.operator, w);
    walkNode(node.rightOperand, w);
  },
  UnaryOperationNode: (node, w) => {
    walkNode(node.operator, w);
    walkNode(node.operand, w);
  },
  ValueListNode: (node, w) => each(node.values, w),
  TupleNode: (node, w) => each(node.values, w),
  ListNode: (node, w) => each(node.items, w),
  FunctionNode: (node, w) => each(node.arguments, w),
  AggregateFunctionNode: (node, w) => {
    each(node.aggregated, w);
    one(node.orderBy, w);
    one(node.withinGroup, w);
    one(node.filter, w);
    one(node.over, w);
  },
  OverNode: (node, w) => {
    one(node.partitionBy, w);
    one(node.orderBy, w);
  },
  PartitionByNode: (node, w) => each(node.items, w),
  CaseNode: (node, w) => {
    one(node.value, w);
    each(node.when, w);
    one(node.else, w);
  },
  WhenNode: (node, w) => {
    walkNode(node.condition, w);
    one(node.result, w);
  },
  CastNode: (node, w) => {
    walkNode(node.expression, w);
    walkNode(node.dataType, w);
  },
  JSONReferenceNode: (node, w) => walkNode(node.traversal, w),
  RawNode: (node, w) => each(node.parameters, w),
  // Clauses. LIMIT and OFFSET take any expression, a subquery included.
  FromNode: (node, w) => each(node.froms, w),
  JoinNode: (node, w) => {
    walkNode(node.table, w);
    one(node.on, w);
  },
  OnNode: (node, w) => walkNode(node.on, w),
  UsingNode: (node, w) => each(node.tables, w),
  WhereNode: (node, w) => walkNode(node.where, w),
  GroupByNode: (node, w) => each(node.items, w),
  GroupByItemNode: (node, w) => walkNode(node.groupBy, w),
  HavingNode: (node, w) => walkNode(node.having, w),
  OrderByNode: (node, w) => each(node.items, w),
  OrderByItemNode: (node, w) => {
    walkNode(node.orderBy, w);
    one(node.direction, w);
    one(node.collation, w);
  },
  LimitNode: (node, w) => walkNode(node.limit, w),
  OffsetNode: (node, w) => walkNode(node.offset, w),
  SelectModifierNode: (node, w) => {
    one(node.rawModifier, w);
    each(node.of, w);
  },
  SetOperationNode: (node, w) => walkNode(node.expression, w),
  WithNode: (node, w) => each(node.expressions, w),
  CommonTableExpressionNode: (node, w) => {
    walkNode(node.name, w);
    walkNode(node.expression, w);
  },
  ExplainNode: (node, w) => one(node.options, w),
  ReturningNode: (node, w) => each(node.selections, w),
  OutputNode: (node, w) => each(node.selections, w),
  ValuesNode: (node, w) => each(node.values, w),
  ColumnUpdateNode: (node, w) => {
    walkNode(node.column, w);
    walkNode(node.value, w);
  },
  OnConflictNode: (node, w) => {
    one(node.indexExpression, w);
    one(node.indexWhere, w);
    each(node.updates, w);
    one(node.updateWhere, w);
  },
  OnDuplicateKeyNode: (node, w) => each(node.updates, w),
  // Schema statements: defaults, checks, generated columns, index expressions and view bodies are expressions.
  CreateTableNode: (node, w) => {
    each(node.columns, w);
    each(node.constraints, w);
    each(node.frontModifiers, w);
    each(node.endModifiers, w);
    one(node.selectQuery, w);
  },
  ColumnDefinitionNode: (node, w) => {
    walkNode(node.dataType, w);
    one(node.references, w);
    one(node.defaultTo, w);
    one(node.check, w);
    one(node.generated, w);
    each(node.frontModifiers, w);
    each(node.endModifiers, w);
  },
  DefaultValueNode: (node, w) => walkNode(node.defaultValue, w),
  CheckConstraintNode: (node, w) => walkNode(node.expression, w),
  GeneratedNode: (node, w) => one(node.expression, w),
  ForeignKeyConstraintNode: (node, w) => walkNode(node.references, w),
  AddColumnNode: (node, w) => walkNode(node.column, w),
  ModifyColumnNode: (node, w) => walkNode(node.column, w),
  AddConstraintNode: (node, w) => walkNode(node.constraint, w),
  AlterColumnNode: (node, w) => {
    one(node.dataType, w);
    one(node.dataTypeExpression, w);
    one(node.setDefault, w);
  },
  AlterTableNode: (node, w) => {
    each(node.columnAlterations, w);
    one(node.addConstraint, w);
    one(node.dropConstraint, w);
    one(node.renameConstraint, w);
    one(node.addIndex, w);
    one(node.dropIndex, w);
  },
  CreateIndexNode: (node, w) => {
    each(node.columns, w);
    one(node.using, w);
    one(node.where, w);
  },
  AddIndexNode: (node, w) => {
    each(node.columns, w);
    one(node.using, w);
  },
  CreateTypeNode: (node, w) => one(node.enum, w),
  CreateViewNode: (node, w) => one(node.as, w),
});

/** Walks `node`: a query is reported as a scope; any other node has its children that may hold a query visited. */
export function walkNode(node: OperationNode, walker: QueryWalker): void {
  // The table gives each kind the handler of its own node type (checked above), which a lookup by
  // a kind known only at run time cannot express to the compiler.
  const handler = WALK[node.kind] as ((node: OperationNode, walker: QueryWalker) => void) | null;
  if (handler !== null) handler(node, walker);
}

/** Query kinds with their node type. */
interface QueryNodeOf {
  SelectQueryNode: SelectQueryNode;
  InsertQueryNode: InsertQueryNode;
  UpdateQueryNode: UpdateQueryNode;
  DeleteQueryNode: DeleteQueryNode;
}

/**
 * The children of each query kind, in the order the SQL reads them, other than its WITH: the
 * analysis visits the CTE bodies itself, each with the CTE names visible to it.
 */
const QUERY_CHILDREN: { readonly [K in QueryNode['kind']]: (node: QueryNodeOf[K], walker: QueryWalker) => void } = Object.freeze({
  SelectQueryNode: (node, w) => {
    each(node.frontModifiers, w);
    each(node.distinctOn, w);
    // The commonest wrappers (selection, FROM, WHERE) are read through their fields: one dispatch fewer each.
    const selections = node.selections;
    if (selections !== undefined) for (let i = 0; i < selections.length; i++) walkNode(selections[i]!.selection, w);
    if (node.from !== undefined) each(node.from.froms, w);
    each(node.joins, w);
    if (node.where !== undefined) walkNode(node.where.where, w);
    one(node.groupBy, w);
    one(node.having, w);
    each(node.setOperations, w);
    one(node.orderBy, w);
    one(node.limit, w);
    one(node.offset, w);
    one(node.fetch, w);
    one(node.top, w);
    each(node.endModifiers, w);
    one(node.explain, w);
  },
  InsertQueryNode: (node, w) => {
    one(node.values, w);
    one(node.onConflict, w);
    one(node.onDuplicateKey, w);
    one(node.orAction, w);
    one(node.returning, w);
    one(node.output, w);
    one(node.top, w);
    each(node.endModifiers, w);
    one(node.explain, w);
  },
  UpdateQueryNode: (node, w) => {
    one(node.table, w);
    each(node.updates, w);
    one(node.from, w);
    each(node.joins, w);
    one(node.where, w);
    one(node.orderBy, w);
    one(node.limit, w);
    one(node.returning, w);
    one(node.output, w);
    one(node.top, w);
    each(node.endModifiers, w);
    one(node.explain, w);
  },
  DeleteQueryNode: (node, w) => {
    one(node.from, w);
    one(node.using, w);
    each(node.joins, w);
    one(node.where, w);
    one(node.orderBy, w);
    one(node.limit, w);
    one(node.returning, w);
    one(node.output, w);
    one(node.top, w);
    each(node.endModifiers, w);
    one(node.explain, w);
  },
});

/** Visits the children of a query node other than its WITH (see {@link QUERY_CHILDREN}). */
export function walkQueryChildren(node: QueryNode, walker: QueryWalker): void {
  (QUERY_CHILDREN[node.kind] as (node: QueryNode, walker: QueryWalker) => void)(node, walker);
}
