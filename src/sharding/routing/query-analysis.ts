/**
 * What the router needs to know about a statement, read from Kysely's operation-node tree without
 * looking at the topology: the tables of every query scope, which shard keys each scope is pinned
 * to, and the rows of an insert. Pure and cheap (one walk of the tree): it runs for every query.
 */
import {
  AliasNode,
  ColumnNode,
  IdentifierNode,
  PrimitiveValueListNode,
  ReferenceNode,
  TableNode,
  ValuesNode,
  type ColumnUpdateNode,
  type DeleteQueryNode,
  type InsertQueryNode,
  type OperationNode,
  type RootOperationNode,
  type SelectQueryNode,
  type UpdateQueryNode,
} from 'kysely';
import { invalidShardKeyValue } from '../../cluster/shard-key';
import { keyConstraint, literalKey, unlinkedTables, type KeyConstraint, type ScopeTable, type ShardKeySpec } from './key-constraint';
import { walkNode, walkQueryChildren, type QueryNode, type QueryWalker } from './query-walk';

/** What the analysis found in one statement. */
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
  /** The shard key column. */
  readonly column: string;
  /** The key of each row, or a reason why a row's key cannot be read. */
  readonly rowKeys: readonly unknown[];
  /** Set when the insert has no readable per-row keys (no key column, non-literal key, insert … select, default values). */
  readonly problem?: string;
}

/** How the analyzer learns which tables are sharded. */
export interface ShardKeyLookup {
  /** The shard key of `table` (optionally schema-qualified), or `undefined` when the table is not sharded. May throw when the name is ambiguous. */
  shardKeyOf(table: string, schema: string | undefined): ShardKeySpec | undefined;
}

// Kysely's node guards, read once: each read of a kysely export runs a getter of its CommonJS index,
// which would cost more than the rest of a point query's analysis.
const isAlias = AliasNode.is;
const isColumn = ColumnNode.is;
const isIdentifier = IdentifierNode.is;
const isPrimitiveValueList = PrimitiveValueListNode.is;
const isReference = ReferenceNode.is;
const isTable = TableNode.is;
const isValues = ValuesNode.is;

const ROOT_KIND: Readonly<Record<RootOperationNode['kind'], StatementKind>> = Object.freeze({
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
});

/** The kind of statement a root node is. */
export function statementKindOf(root: RootOperationNode): StatementKind {
  return ROOT_KIND[root.kind];
}

/** Analyzes a root operation node. */
export function analyzeQuery(root: RootOperationNode, lookup: ShardKeyLookup): QueryAnalysis {
  const statement = ROOT_KIND[root.kind];
  if (statement === 'ddl' || statement === 'raw' || statement === 'merge') return { statement, scopes: NO_SCOPES, nestedWrites: NO_WRITES };
  const walk = new ScopeWalk(lookup);
  const insert = walk.analyze(root as QueryNode);
  const scopes = walk.scopes ?? NO_SCOPES;
  const nestedWrites = walk.nestedWrites ?? NO_WRITES;
  return insert === undefined ? { statement, scopes, nestedWrites } : { statement, scopes, insert, nestedWrites };
}

// The walk allocates its lists on first use ([x] rather than push onto []): an empty array's first
// push reserves room for 17 items, and most queries need one.
const NO_SCOPES: readonly ScopeAnalysis[] = Object.freeze([]);
const NO_WRITES: readonly NestedWrite[] = Object.freeze([]);
const NONE: readonly string[] = Object.freeze([]);
const NO_TABLES: readonly ScopeTable[] = Object.freeze([]);
const EMPTY_SCOPE: ScopeAnalysis = Object.freeze({ shardedTables: NONE, unshardedTables: NONE, keys: null, unlinkedTables: NONE });

// Frozen one-table lists, shared by every query on that table (the set of table names is small).
const singleTables = new Map<string, readonly string[]>();
function singleTable(name: string): readonly string[] {
  let list = singleTables.get(name);
  if (list === undefined) singleTables.set(name, (list = Object.freeze([name])));
  return list;
}

/** CTE names visible in a scope (a `from cte_name` is not a table); `undefined` when there are none. */
type VisibleCtes = ReadonlySet<string> | undefined;

/** One analysis: the scopes found so far, and the CTE names visible where the walk is. */
class ScopeWalk implements QueryWalker {
  readonly #lookup: ShardKeyLookup;
  /** The root's scope first; a slot is reserved when a scope starts, so nested scopes come after it. */
  scopes: ScopeAnalysis[] | undefined;
  nestedWrites: NestedWrite[] | undefined;
  #ctes: VisibleCtes;

  constructor(lookup: ShardKeyLookup) {
    this.#lookup = lookup;
  }

  scope(node: QueryNode): void {
    this.analyze(node);
  }

  /** Analyzes one query scope, then the scopes nested in it; returns the rows of an insert into a sharded table. */
  analyze(node: QueryNode): InsertAnalysis | undefined {
    const outer = this.#ctes;
    let ctes = outer;
    let cteBodies: [OperationNode, VisibleCtes][] | undefined;
    if (node.with !== undefined) {
      cteBodies = [];
      // Lexical scope: a CTE body sees the CTEs before it (and itself when recursive); the query sees all.
      for (const cte of node.with.expressions) {
        const withSelf = new Set(ctes);
        withSelf.add(cte.name.table.table.identifier.name);
        cteBodies.push([cte.expression, node.with.recursive === true ? withSelf : ctes]);
        ctes = withSelf;
      }
    }

    const tables = scopeTables(node.kind, node, this.#lookup, ctes);
    // Most scopes have one table: share the empty lists instead of allocating per query.
    let sharded: readonly ScopeTable[] = NO_TABLES;
    let unshardedTables: readonly string[] = NONE;
    for (let i = 0; i < tables.length; i++) {
      const t = tables[i]!;
      if (t.keyColumn === undefined) unshardedTables = unshardedTables === NONE ? [t.name] : [...unshardedTables, t.name];
      else sharded = sharded === NO_TABLES ? [t] : [...sharded, t];
    }
    const isRoot = this.scopes === undefined;
    // Reserve the slot (filled below) so this scope comes before the ones nested in it.
    let scopes = this.scopes;
    if (scopes === undefined) scopes = this.scopes = [EMPTY_SCOPE];
    else scopes.push(EMPTY_SCOPE);
    const scopeIndex = scopes.length - 1;

    let insert: InsertAnalysis | undefined;
    let constraint: KeyConstraint | null = null;
    let unlinked: readonly string[] | undefined;
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
      unlinked = unlinkedTables(sharded, tables, node.joins, where);
      if (node.kind === 'UpdateQueryNode' && target?.key !== undefined) keyWrites = keyAssignments(node.updates, target, false);
    }
    if (!isRoot && node.kind !== 'SelectQueryNode') {
      const write: NestedWrite = { kind: NESTED_WRITE_KIND[node.kind], table: target?.name ?? null };
      this.nestedWrites = this.nestedWrites === undefined ? [write] : [...this.nestedWrites, write];
    }

    const scope: { -readonly [K in keyof ScopeAnalysis]: ScopeAnalysis[K] } = {
      shardedTables: sharded.length === 1 ? singleTable(sharded[0]!.name) : sharded.map((t) => t.name),
      unshardedTables,
      keys: constraint === null ? null : constraint.keys,
      unlinkedTables: unlinked ?? NONE,
    };
    if (constraint?.list !== undefined) scope.keyList = constraint.list;
    if (keyWrites !== undefined) scope.keyWrites = keyWrites;
    scopes[scopeIndex] = scope;

    // CTE bodies, then subqueries anywhere else in this scope, are scopes of their own.
    if (cteBodies !== undefined) {
      for (const [body, visible] of cteBodies) {
        this.#ctes = visible;
        walkNode(body, this);
      }
    }
    this.#ctes = ctes;
    walkQueryChildren(node, this);
    this.#ctes = outer;
    return insert;
  }
}

const NESTED_WRITE_KIND: Readonly<Record<Exclude<QueryNode['kind'], 'SelectQueryNode'>, NestedWrite['kind']>> = Object.freeze({
  InsertQueryNode: 'insert',
  UpdateQueryNode: 'update',
  DeleteQueryNode: 'delete',
});

/** The tables of a scope's FROM / JOIN / USING / target items, per query kind. */
const SCOPE_TABLES: {
  readonly [K in QueryNode['kind']]: (node: Extract<QueryNode, { kind: K }>, lookup: ShardKeyLookup, ctes: VisibleCtes) => readonly ScopeTable[];
} = Object.freeze({
  SelectQueryNode: (node: SelectQueryNode, lookup: ShardKeyLookup, ctes: VisibleCtes) => {
    const tables = node.from === undefined ? NO_TABLES : addTables(node.from.froms, NO_TABLES, lookup, ctes);
    return addJoins(node.joins, tables, lookup, ctes);
  },
  InsertQueryNode: (node: InsertQueryNode, lookup: ShardKeyLookup, ctes: VisibleCtes) => (node.into === undefined ? NO_TABLES : addTable(node.into, NO_TABLES, lookup, ctes)),
  UpdateQueryNode: (node: UpdateQueryNode, lookup: ShardKeyLookup, ctes: VisibleCtes) => {
    let tables = node.table === undefined ? NO_TABLES : addTable(node.table, NO_TABLES, lookup, ctes);
    if (node.from !== undefined) tables = addTables(node.from.froms, tables, lookup, ctes);
    return addJoins(node.joins, tables, lookup, ctes);
  },
  DeleteQueryNode: (node: DeleteQueryNode, lookup: ShardKeyLookup, ctes: VisibleCtes) => {
    let tables = addTables(node.from.froms, NO_TABLES, lookup, ctes);
    if (node.using !== undefined) tables = addTables(node.using.tables, tables, lookup, ctes);
    return addJoins(node.joins, tables, lookup, ctes);
  },
});

function scopeTables<K extends QueryNode['kind']>(kind: K, node: Extract<QueryNode, { kind: K }>, lookup: ShardKeyLookup, ctes: VisibleCtes): readonly ScopeTable[] {
  return SCOPE_TABLES[kind](node, lookup, ctes);
}

function addJoins(joins: SelectQueryNode['joins'], tables: readonly ScopeTable[], lookup: ShardKeyLookup, ctes: VisibleCtes): readonly ScopeTable[] {
  if (joins !== undefined) for (let i = 0; i < joins.length; i++) tables = addTable(joins[i]!.table, tables, lookup, ctes);
  return tables;
}

function addTables(items: readonly OperationNode[], tables: readonly ScopeTable[], lookup: ShardKeyLookup, ctes: VisibleCtes): readonly ScopeTable[] {
  for (let i = 0; i < items.length; i++) tables = addTable(items[i]!, tables, lookup, ctes);
  return tables;
}

/** `tables` with `item` appended when it is a table (not a CTE, subquery or function); `NO_TABLES` grows into a new list. */
function addTable(item: OperationNode, tables: readonly ScopeTable[], lookup: ShardKeyLookup, ctes: VisibleCtes): readonly ScopeTable[] {
  let table: TableNode | undefined;
  let alias: string | undefined;
  if (isTable(item)) table = item;
  else if (isAlias(item) && isTable(item.node)) {
    table = item.node;
    alias = isIdentifier(item.alias) ? item.alias.name : undefined;
  }
  if (table === undefined) return tables; // a subquery or function in FROM: the walk analyzes it as a scope
  const name = table.table.identifier.name;
  const schema = table.table.schema?.name;
  if (schema === undefined && ctes?.has(name) === true) return tables;
  const key = lookup.shardKeyOf(name, schema);
  const entry: ScopeTable = { name: key?.table ?? (schema === undefined ? name : `${schema}.${name}`), ref: alias ?? name, keyColumn: key?.column, key };
  if (tables === NO_TABLES) return [entry];
  (tables as ScopeTable[]).push(entry);
  return tables;
}

/**
 * The new key values a list of `SET column = value` assignments gives the target's key column:
 * `undefined` when the key is not assigned, `'expression'` when a new value cannot be read.
 * In ON CONFLICT DO UPDATE, `key = excluded.key` keeps the row's key (the conflicting row was routed by it).
 */
function keyAssignments(updates: readonly ColumnUpdateNode[] | undefined, target: ScopeTable, onConflict: boolean): readonly unknown[] | 'expression' | undefined {
  if (updates === undefined) return undefined;
  const keyColumn = target.keyColumn!;
  let keys: unknown[] | undefined;
  for (const { column, value } of updates) {
    if (!isColumn(column) || column.column.name !== keyColumn) continue;
    if (onConflict && isExcludedKey(value, keyColumn)) continue;
    const literal = literalKey(value, target.key!);
    if (literal === undefined) return 'expression';
    (keys ??= []).push(target.key!.canonical(literal));
  }
  return keys;
}

function isExcludedKey(node: OperationNode, column: string): boolean {
  return isReference(node) && node.table?.table.identifier.name === 'excluded' && isColumn(node.column) && node.column.column.name === column;
}

function analyzeInsertRows(node: InsertQueryNode, target: ScopeTable): InsertAnalysis {
  const column = target.keyColumn!;
  const fail = (problem: string): InsertAnalysis => ({ table: target.name, column, rowKeys: [], problem });
  const index = (node.columns ?? []).findIndex((c) => c.column.name === column);
  if (index < 0) return fail(`the insert does not set the shard key column "${column}"`);
  if (node.values === undefined || !isValues(node.values)) {
    return fail(`an insert … select into a sharded table cannot be split by row: its rows' keys are unknown until it runs`);
  }
  const rowKeys: unknown[] = [];
  for (const row of node.values.values) {
    let key: unknown;
    if (isPrimitiveValueList(row)) {
      key = row.values[index];
      if (key === null || typeof key === 'object') throw invalidShardKeyValue(key, target.key!.table, column);
    } else {
      const item = row.values[index];
      key = item === undefined ? undefined : literalKey(item, target.key!);
    }
    if (key === undefined) return fail(`row ${rowKeys.length} sets "${column}" to an expression, not a literal value`);
    rowKeys.push(target.key!.canonical(key));
  }
  return { table: target.name, column, rowKeys };
}
