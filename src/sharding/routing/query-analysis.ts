import type {
  AliasNode,
  BinaryOperationNode,
  DeleteQueryNode,
  InsertQueryNode,
  JoinNode,
  OperationNode,
  RootOperationNode,
  SelectQueryNode,
  TableNode,
  UpdateQueryNode,
  WithNode,
} from 'kysely';

/**
 * What the router needs to know about a statement, read from Kysely's operation-node tree without
 * looking at the topology: the tables of every query scope, which shard keys each scope is pinned
 * to, and the rows of an insert. Pure and cheap (one walk of the tree): it runs for every query.
 */
export interface QueryAnalysis {
  readonly statement: StatementKind;
  /** One entry per query scope (the root first, then subqueries and CTEs). */
  readonly scopes: readonly ScopeAnalysis[];
  /** For inserts into a sharded table: the key of every row, in order, and the rows node to split. */
  readonly insert?: InsertAnalysis;
  /** Writes inside the statement below its root (data-modifying CTEs such as `with d as (delete …) select …`). */
  readonly nestedWrites: readonly NestedWrite[];
}

/** A write found in a nested scope. */
export interface NestedWrite {
  readonly kind: 'insert' | 'update' | 'delete';
  readonly table: string | null;
}

export type StatementKind = 'select' | 'insert' | 'update' | 'delete' | 'ddl' | 'raw' | 'merge';

/** The tables and key constraint of one SELECT/INSERT/UPDATE/DELETE scope. */
export interface ScopeAnalysis {
  /** Sharded tables of the scope (by configured name). */
  readonly shardedTables: readonly string[];
  /** Tables that are not sharded. */
  readonly unshardedTables: readonly string[];
  /** Shard keys the scope's WHERE pins it to, or `null` when it names none. */
  readonly keys: readonly unknown[] | null;
  /** The `in (…)` list node that holds `keys`, when the constraint is a single list (it can then be split per shard). */
  readonly keyList?: OperationNode;
  /** Sharded tables that are joined without equality on their shard keys (cannot be co-located). */
  readonly unlinkedTables: readonly string[];
  /**
   * New shard key values the scope writes (UPDATE … SET key = v, ON CONFLICT DO UPDATE SET key = v):
   * literal keys, or `'expression'` when a new key cannot be read from the tree. A row whose key
   * changes may belong to another shard.
   */
  readonly keyWrites?: readonly unknown[] | 'expression';
}

export interface InsertAnalysis {
  readonly table: string;
  /** The key of each row, or a reason why a row's key cannot be read. */
  readonly rowKeys: readonly unknown[];
  /** Set when the insert has no readable per-row keys (no key column, non-literal key, insert … select, default values). */
  readonly problem?: string;
}

/** A sharded table's key as configured. */
export interface ShardKeySpec {
  /** The configured table name (as in `shardKeys`), used for policies and messages. */
  readonly table: string;
  readonly column: string;
  /** Canonicalises a literal key value read from a query (per the column's key type); throws ShardKeyError. */
  readonly canonical: (value: unknown) => unknown;
}

/** How the analyzer learns which tables are sharded. */
export interface ShardKeyLookup {
  /** The shard key of `table` (optionally schema-qualified), or `undefined` when the table is not sharded. May throw when the name is ambiguous. */
  shardKeyOf(table: string, schema: string | undefined): ShardKeySpec | undefined;
}

type QueryNode = SelectQueryNode | InsertQueryNode | UpdateQueryNode | DeleteQueryNode;

const ROOT_KIND: Record<RootOperationNode['kind'], StatementKind> = {
  SelectQueryNode: 'select',
  InsertQueryNode: 'insert',
  UpdateQueryNode: 'update',
  DeleteQueryNode: 'delete',
  MergeQueryNode: 'merge',
  RawNode: 'raw',
  CreateTableNode: 'ddl',
  CreateIndexNode: 'ddl',
  CreateSchemaNode: 'ddl',
  CreateViewNode: 'ddl',
  RefreshMaterializedViewNode: 'ddl',
  DropTableNode: 'ddl',
  DropIndexNode: 'ddl',
  DropSchemaNode: 'ddl',
  DropViewNode: 'ddl',
  AlterTableNode: 'ddl',
  CreateTypeNode: 'ddl',
  DropTypeNode: 'ddl',
};

// Leaves and nodes that can never contain a query: the walk does not descend into them. (LIMIT and
// OFFSET are not among them: each takes any expression, a subquery included.)
const LEAF_KINDS = new Set([
  'IdentifierNode', 'ValueNode', 'OperatorNode', 'PrimitiveValueListNode', 'TableNode', 'ColumnNode', 'ReferenceNode',
  'SchemableIdentifierNode', 'SelectAllNode', 'DefaultInsertValueNode', 'DataTypeNode',
]);

/** Analyzes a root operation node. */
export function analyzeQuery(root: RootOperationNode, lookup: ShardKeyLookup): QueryAnalysis {
  const statement = ROOT_KIND[root.kind];
  if (statement === 'ddl' || statement === 'raw' || statement === 'merge') return { statement, scopes: NO_SCOPES, nestedWrites: NO_WRITES };
  const ctx: WalkContext = { lookup, scopes: NO_SCOPES, nestedWrites: NO_WRITES };
  const insert = analyzeScope(root as QueryNode, ctx, undefined);
  const { scopes, nestedWrites } = ctx;
  return insert === undefined ? { statement, scopes, nestedWrites } : { statement, scopes, insert, nestedWrites };
}

// The walk allocates its lists on first use ([x] rather than push onto []): an empty array's first
// push reserves room for 17 items, and most queries need one.
const NO_SCOPES: readonly ScopeAnalysis[] = Object.freeze([]);

const NO_WRITES: readonly NestedWrite[] = Object.freeze([]);

interface WalkContext {
  readonly lookup: ShardKeyLookup;
  /** The root's scope first; a slot is reserved when a scope starts, so nested scopes come after it. */
  scopes: readonly ScopeAnalysis[];
  nestedWrites: readonly NestedWrite[];
}

/** CTE names visible in a scope (a `from cte_name` is not a table); `undefined` when there are none. */
type VisibleCtes = ReadonlySet<string> | undefined;

interface ScopeTable {
  /** The configured name for sharded tables, the name as written otherwise. */
  readonly name: string;
  /** The name the scope refers to it by (alias or table name). */
  readonly ref: string;
  readonly keyColumn: string | undefined;
  readonly key: ShardKeySpec | undefined;
}

function analyzeScope(node: QueryNode, ctx: WalkContext, outerCtes: VisibleCtes): InsertAnalysis | undefined {
  const isRoot = ctx.scopes === NO_SCOPES;
  const withNode = (node as { with?: WithNode }).with;
  let ctes = outerCtes;
  let cteBodies: [OperationNode, VisibleCtes][] | undefined;
  if (withNode !== undefined) {
    cteBodies = [];
    // Lexical scope: a CTE body sees the CTEs before it (and itself when recursive); the query sees all.
    for (const cte of withNode.expressions) {
      const name = cte.name.table.table.identifier.name;
      const withSelf = new Set(ctes);
      withSelf.add(name);
      cteBodies.push([cte.expression, withNode.recursive === true ? withSelf : ctes]);
      ctes = withSelf;
    }
  }

  const tables = scopeTables(node, ctx, ctes);
  // Most scopes have one table: share the empty lists instead of allocating per query.
  let sharded: readonly ScopeTable[] = NO_TABLES;
  let unshardedTables: readonly string[] = NONE;
  for (let i = 0; i < tables.length; i++) {
    const t = tables[i]!;
    if (t.keyColumn === undefined) unshardedTables = unshardedTables === NONE ? [t.name] : [...unshardedTables, t.name];
    else sharded = sharded === NO_TABLES ? [t] : [...sharded, t];
  }
  const scopeIndex = ctx.scopes.length;
  // Reserve the slot (filled below) so this scope comes before the ones nested in it.
  if (scopeIndex === 0) ctx.scopes = [EMPTY_SCOPE];
  else (ctx.scopes as ScopeAnalysis[]).push(EMPTY_SCOPE);
  let insert: InsertAnalysis | undefined;
  let constraint: KeyConstraint | null = null;
  let unlinked: readonly string[] = NONE;

  let keyWrites: readonly unknown[] | 'expression' | undefined;
  const target = tables[0];
  if (node.kind === 'InsertQueryNode') {
    if (target?.key !== undefined) {
      insert = analyzeInsertRows(node, target);
      keyWrites = keyAssignments(node.onConflict?.updates, target, true);
    }
  } else if (sharded.length > 0) {
    const where = node.where?.where;
    if (where !== undefined) constraint = keyConstraint(where, tables);
    unlinked = unlinkedTables(sharded, tables, node);
    if (node.kind === 'UpdateQueryNode' && target?.key !== undefined) keyWrites = keyAssignments(node.updates, target, false);
  }
  if (!isRoot && node.kind !== 'SelectQueryNode') {
    const kind = node.kind === 'InsertQueryNode' ? 'insert' : node.kind === 'UpdateQueryNode' ? 'update' : 'delete';
    ctx.nestedWrites = [...ctx.nestedWrites, { kind, table: target?.name ?? null }];
  }

  const scope: { -readonly [K in keyof ScopeAnalysis]: ScopeAnalysis[K] } = {
    shardedTables: sharded.length === 1 ? singleTable(sharded[0]!.name) : sharded.map((t) => t.name),
    unshardedTables,
    keys: constraint === null ? null : constraint.keys,
    unlinkedTables: unlinked,
  };
  if (constraint?.list !== undefined) scope.keyList = constraint.list;
  if (keyWrites !== undefined) scope.keyWrites = keyWrites;
  (ctx.scopes as ScopeAnalysis[])[scopeIndex] = scope;

  // CTE bodies, then subqueries anywhere else in this scope, are scopes of their own.
  if (cteBodies !== undefined) for (const [body, visible] of cteBodies) visit(body, ctx, visible);
  walkChildren(node, ctx, ctes, 'with');
  return insert;
}

/**
 * The new key values a list of `SET column = value` assignments gives the target's key column:
 * `undefined` when the key is not assigned, `'expression'` when a new value cannot be read.
 * In ON CONFLICT DO UPDATE, `key = excluded.key` keeps the row's key (the conflicting row was routed by it).
 */
function keyAssignments(updates: readonly OperationNode[] | undefined, target: ScopeTable, onConflict: boolean): readonly unknown[] | 'expression' | undefined {
  if (updates === undefined) return undefined;
  let keys: unknown[] | undefined;
  for (const update of updates) {
    const { column, value } = update as unknown as { column: OperationNode; value: OperationNode };
    if (column.kind !== 'ColumnNode' || (column as unknown as { column: { name: string } }).column.name !== target.keyColumn) continue;
    if (onConflict && isExcludedKey(value, target.keyColumn!)) continue;
    const literal = literalValue(value);
    if (literal === undefined) return 'expression';
    (keys ??= []).push(target.key!.canonical(literal));
  }
  return keys;
}

function isExcludedKey(node: OperationNode, column: string): boolean {
  if (node.kind !== 'ReferenceNode') return false;
  const ref = node as unknown as { column: OperationNode; table?: TableNode };
  return ref.table?.table.identifier.name === 'excluded' && ref.column.kind === 'ColumnNode' && (ref.column as unknown as { column: { name: string } }).column.name === column;
}

const NONE: readonly string[] = Object.freeze([]);

// Frozen one-table lists, shared by every query on that table (the set of table names is small).
const singleTables = new Map<string, readonly string[]>();
function singleTable(name: string): readonly string[] {
  let list = singleTables.get(name);
  if (list === undefined) singleTables.set(name, (list = Object.freeze([name])));
  return list;
}
const NO_TABLES: readonly ScopeTable[] = Object.freeze([]);
const EMPTY_SCOPE: ScopeAnalysis = Object.freeze({ shardedTables: [], unshardedTables: [], keys: null, unlinkedTables: [] });

/** The tables of the scope's FROM / JOIN / USING / target items. */
function scopeTables(node: QueryNode, ctx: WalkContext, ctes: VisibleCtes): readonly ScopeTable[] {
  let tables = NO_TABLES;
  switch (node.kind) {
    case 'SelectQueryNode':
      if (node.from !== undefined) tables = addTables(node.from.froms, tables, ctx, ctes);
      break;
    case 'InsertQueryNode':
      if (node.into !== undefined) tables = addTable(node.into, tables, ctx, ctes);
      break;
    case 'UpdateQueryNode':
      if (node.table !== undefined) tables = addTable(node.table, tables, ctx, ctes);
      if (node.from !== undefined) tables = addTables(node.from.froms, tables, ctx, ctes);
      break;
    case 'DeleteQueryNode':
      tables = addTables(node.from.froms, tables, ctx, ctes);
      if (node.using !== undefined) tables = addTables(node.using.tables, tables, ctx, ctes);
      break;
  }
  const joins = (node as { joins?: readonly JoinNode[] }).joins;
  if (joins !== undefined) for (let i = 0; i < joins.length; i++) tables = addTable(joins[i]!.table, tables, ctx, ctes);
  return tables;
}

function addTables(items: readonly OperationNode[], tables: readonly ScopeTable[], ctx: WalkContext, ctes: VisibleCtes): readonly ScopeTable[] {
  for (let i = 0; i < items.length; i++) tables = addTable(items[i]!, tables, ctx, ctes);
  return tables;
}

/** `tables` with `item` appended when it is a table (not a CTE, subquery or function); `NO_TABLES` grows into a new list. */
function addTable(item: OperationNode, tables: readonly ScopeTable[], ctx: WalkContext, ctes: VisibleCtes): readonly ScopeTable[] {
  let table: TableNode | undefined;
  let alias: string | undefined;
  if (item.kind === 'TableNode') table = item as TableNode;
  else if (item.kind === 'AliasNode') {
    const aliased = item as AliasNode;
    if (aliased.node.kind === 'TableNode') {
      table = aliased.node as TableNode;
      alias = identifierName(aliased.alias);
    }
  }
  if (table === undefined) return tables; // a subquery or function in FROM: the walk analyzes it as a scope
  const name = table.table.identifier.name;
  const schema = table.table.schema?.name;
  if (schema === undefined && ctes?.has(name) === true) return tables;
  const key = ctx.lookup.shardKeyOf(name, schema);
  const entry: ScopeTable = { name: key?.table ?? (schema === undefined ? name : `${schema}.${name}`), ref: alias ?? name, keyColumn: key?.column, key };
  if (tables === NO_TABLES) return [entry];
  (tables as ScopeTable[]).push(entry);
  return tables;
}

function identifierName(node: OperationNode): string | undefined {
  return node.kind === 'IdentifierNode' ? (node as unknown as { name: string }).name : undefined;
}

interface KeyConstraint {
  readonly keys: readonly unknown[];
  readonly list?: OperationNode;
}

/** The shard keys a WHERE condition pins its scope to; `null` when it does not pin it. */
function keyConstraint(node: OperationNode, tables: readonly ScopeTable[]): KeyConstraint | null {
  switch (node.kind) {
    case 'ParensNode':
      return keyConstraint((node as unknown as { node: OperationNode }).node, tables);
    case 'AndNode': {
      const { left, right } = node as unknown as { left: OperationNode; right: OperationNode };
      const l = keyConstraint(left, tables);
      const r = keyConstraint(right, tables);
      // Either side alone is a correct pin; the narrower one touches fewer shards.
      if (l === null) return r;
      if (r === null) return l;
      return r.keys.length < l.keys.length ? r : l;
    }
    case 'OrNode': {
      const { left, right } = node as unknown as { left: OperationNode; right: OperationNode };
      const l = keyConstraint(left, tables);
      const r = keyConstraint(right, tables);
      return l === null || r === null ? null : { keys: [...l.keys, ...r.keys] };
    }
    case 'BinaryOperationNode':
      return comparisonConstraint(node as BinaryOperationNode, tables);
    default:
      return null;
  }
}

function comparisonConstraint(node: BinaryOperationNode, tables: readonly ScopeTable[]): KeyConstraint | null {
  const operator = (node.operator as unknown as { operator?: string }).operator;
  if (operator === '=' || operator === '==') {
    const left = keyTableOf(node.leftOperand, tables);
    if (left !== undefined) return literalConstraint(node.rightOperand, left);
    const right = keyTableOf(node.rightOperand, tables);
    if (right !== undefined) return literalConstraint(node.leftOperand, right);
    return null;
  }
  if (operator === 'in') {
    const table = keyTableOf(node.leftOperand, tables);
    const keys = table === undefined ? null : listValues(node.rightOperand);
    return keys === null ? null : { keys: keys.map(table!.key!.canonical), list: node.rightOperand };
  }
  return null;
}

function literalConstraint(node: OperationNode, table: ScopeTable): KeyConstraint | null {
  const value = literalValue(node);
  return value === undefined ? null : { keys: [table.key!.canonical(value)] };
}

/** The value of a literal operand (a parameter or an immediate value); `undefined` when it is an expression. */
export function literalValue(node: OperationNode): unknown {
  if (node.kind !== 'ValueNode') return undefined;
  const value = (node as unknown as { value: unknown }).value;
  return value === null || typeof value === 'object' ? undefined : value;
}

function listValues(node: OperationNode): unknown[] | null {
  if (node.kind === 'PrimitiveValueListNode') {
    const values = (node as unknown as { values: readonly unknown[] }).values;
    return values.every((v) => v !== null && typeof v !== 'object') ? [...values] : null;
  }
  if (node.kind === 'ValueListNode') {
    const values = (node as unknown as { values: readonly OperationNode[] }).values.map(literalValue);
    return values.every((v) => v !== undefined) ? values : null;
  }
  return null;
}

function keyTableOf(node: OperationNode, tables: readonly ScopeTable[]): ScopeTable | undefined {
  let column: string | undefined;
  let tableRef: string | undefined;
  if (node.kind === 'ReferenceNode') {
    const ref = node as unknown as { column: OperationNode; table?: TableNode };
    if (ref.column.kind !== 'ColumnNode') return undefined;
    column = (ref.column as unknown as { column: { name: string } }).column.name;
    tableRef = ref.table?.table.identifier.name;
  } else if (node.kind === 'ColumnNode') {
    column = (node as unknown as { column: { name: string } }).column.name;
  } else {
    return undefined;
  }
  for (let i = 0; i < tables.length; i++) {
    const t = tables[i]!;
    // A qualified column names its table; an unqualified one resolves (as in PostgreSQL) to the one table
    // that has it, which for a key column is the sharded table keyed by it.
    if (tableRef !== undefined ? t.ref === tableRef || t.name === tableRef : t.keyColumn === column) {
      return t.keyColumn === column ? t : undefined;
    }
  }
  return undefined;
}

/**
 * Sharded tables that no equality on shard keys links to the first sharded table (through JOIN … ON
 * or WHERE conjuncts): their rows may live on other shards, so the scope cannot run on one shard.
 */
function unlinkedTables(sharded: readonly ScopeTable[], tables: readonly ScopeTable[], node: QueryNode): readonly string[] {
  if (sharded.length < 2) return NONE;
  const links: [ScopeTable, ScopeTable][] = [];
  const collect = (condition: OperationNode | undefined): void => {
    if (condition === undefined) return;
    if (condition.kind === 'AndNode') {
      const { left, right } = condition as unknown as { left: OperationNode; right: OperationNode };
      collect(left);
      collect(right);
    } else if (condition.kind === 'ParensNode') {
      collect((condition as unknown as { node: OperationNode }).node);
    } else if (condition.kind === 'BinaryOperationNode') {
      const op = condition as BinaryOperationNode;
      if ((op.operator as unknown as { operator?: string }).operator !== '=') return;
      const a = keyTableOf(op.leftOperand, tables);
      const b = keyTableOf(op.rightOperand, tables);
      if (a !== undefined && b !== undefined && a !== b) links.push([a, b]);
    }
  };
  const joins: readonly JoinNode[] = (node as { joins?: readonly JoinNode[] }).joins ?? [];
  for (const join of joins) collect(join.on?.on);
  collect((node as { where?: { where: OperationNode } }).where?.where);

  const linked = new Set<ScopeTable>([sharded[0]!]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [a, b] of links) {
      if (linked.has(a) !== linked.has(b)) {
        linked.add(a);
        linked.add(b);
        grew = true;
      }
    }
  }
  return sharded.filter((t) => !linked.has(t)).map((t) => t.name);
}

function analyzeInsertRows(node: InsertQueryNode, target: ScopeTable): InsertAnalysis {
  const column = target.keyColumn!;
  const fail = (problem: string): InsertAnalysis => ({ table: target.name, rowKeys: [], problem });
  const index = (node.columns ?? []).findIndex((c) => c.column.name === column);
  if (index < 0) return fail(`the insert does not set the shard key column "${column}"`);
  if (node.values === undefined || node.values.kind !== 'ValuesNode') {
    return fail(`an insert … select into a sharded table cannot be split by row: its rows' keys are unknown until it runs`);
  }
  const rows = (node.values as unknown as { values: readonly OperationNode[] }).values;
  const rowKeys: unknown[] = [];
  for (const row of rows) {
    const key =
      row.kind === 'PrimitiveValueListNode'
        ? (row as unknown as { values: readonly unknown[] }).values[index]
        : literalValue((row as unknown as { values: readonly OperationNode[] }).values[index] ?? row);
    if (key === undefined || key === null || typeof key === 'object') {
      return fail(`row ${rowKeys.length} sets "${column}" to an expression or null, not a literal value`);
    }
    rowKeys.push(target.key!.canonical(key));
  }
  return { table: target.name, rowKeys };
}

/** Finds query nodes below `node` (not `node` itself, nor under its property `skip`) and analyzes each as a scope. */
function walkChildren(node: OperationNode, ctx: WalkContext, ctes: VisibleCtes, skip?: string): void {
  for (const key in node) {
    if (key === skip) continue;
    const child = (node as unknown as Record<string, unknown>)[key];
    if (child === null || typeof child !== 'object') continue;
    if (Array.isArray(child)) {
      // Index loops, not for…of: an array iterator per node is most of this walk's garbage.
      for (let i = 0; i < child.length; i++) {
        const item: unknown = child[i];
        if (item !== null && typeof item === 'object') visit(item as OperationNode, ctx, ctes);
      }
    } else {
      visit(child as OperationNode, ctx, ctes);
    }
  }
}

function visit(node: OperationNode, ctx: WalkContext, ctes: VisibleCtes): void {
  const kind = node.kind;
  switch (kind) {
    case 'SelectQueryNode':
    case 'InsertQueryNode':
    case 'UpdateQueryNode':
    case 'DeleteQueryNode':
      analyzeScope(node as QueryNode, ctx, ctes);
      return;
    // The commonest inner nodes are read through their fields: enumerating keys costs more than
    // the rest of the analysis. Every other kind is enumerated, so a node kind or field that a
    // later Kysely adds is still searched for subqueries.
    case 'SelectionNode':
      visit((node as unknown as { selection: OperationNode }).selection, ctx, ctes);
      return;
    case 'WhereNode':
      visit((node as unknown as { where: OperationNode }).where, ctx, ctes);
      return;
    case 'BinaryOperationNode': {
      const op = node as BinaryOperationNode;
      visit(op.leftOperand, ctx, ctes);
      visit(op.operator, ctx, ctes);
      visit(op.rightOperand, ctx, ctes);
      return;
    }
    case 'AliasNode':
      visit((node as AliasNode).node, ctx, ctes);
      visit((node as AliasNode).alias, ctx, ctes);
      return;
    case 'FromNode': {
      const froms = (node as unknown as { froms: readonly OperationNode[] }).froms;
      for (let i = 0; i < froms.length; i++) visit(froms[i]!, ctx, ctes);
      return;
    }
    default:
      if (kind === undefined || LEAF_KINDS.has(kind)) return;
      walkChildren(node, ctx, ctes);
  }
}
