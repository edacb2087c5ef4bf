/**
 * What a scope's conditions say about shard keys: the keys a WHERE pins it to (`=` or `in` on a
 * key column, through AND, OR and parentheses), and which sharded tables its joins and conditions
 * link by equality on their keys (co-located rows).
 */
import { AndNode, BinaryOperationNode, ColumnNode, OperatorNode, OrNode, ParensNode, PrimitiveValueListNode, ReferenceNode, ValueListNode, ValueNode, type JoinNode, type OperationNode } from 'kysely';
import { invalidShardKeyValue } from '../../cluster/shard-key';

// Kysely's node guards, read once: each read of a kysely export runs a getter of its CommonJS index,
// which would cost more than the rest of a point query's analysis.
const isAnd = AndNode.is;
const isBinaryOperation = BinaryOperationNode.is;
const isColumn = ColumnNode.is;
const isOperator = OperatorNode.is;
const isOr = OrNode.is;
const isParens = ParensNode.is;
const isPrimitiveValueList = PrimitiveValueListNode.is;
const isReference = ReferenceNode.is;
const isValueList = ValueListNode.is;
const isValue = ValueNode.is;

/** A sharded table's key as configured. */
export interface ShardKeySpec {
  /** The configured table name (as in `shardKeys`), used for policies and messages. */
  readonly table: string;
  readonly column: string;
  /** Canonicalises a literal key value read from a query (per the column's key type); throws ShardKeyError. */
  readonly canonical: (value: unknown) => unknown;
}

/** A table of a query scope (a FROM, JOIN, USING or target item). */
export interface ScopeTable {
  /** The configured name for sharded tables, the name as written otherwise. */
  readonly name: string;
  /** The name the scope refers to it by (alias or table name). */
  readonly ref: string;
  readonly keyColumn: string | undefined;
  readonly key: ShardKeySpec | undefined;
}

/** The shard keys a condition pins its scope to. */
export interface KeyConstraint {
  readonly keys: readonly unknown[];
  /** The `in (…)` list node that holds `keys`, when the constraint is a single list (it can then be split per shard). */
  readonly list?: OperationNode;
}

/** The shard keys a WHERE condition pins its scope to; `null` when it does not pin it. */
export function keyConstraint(node: OperationNode, tables: readonly ScopeTable[]): KeyConstraint | null {
  if (isBinaryOperation(node)) return comparisonConstraint(node, tables);
  if (isParens(node)) return keyConstraint(node.node, tables);
  if (isAnd(node)) {
    const l = keyConstraint(node.left, tables);
    const r = keyConstraint(node.right, tables);
    // Either side alone is a correct pin; the narrower one touches fewer shards.
    if (l === null) return r;
    if (r === null) return l;
    return r.keys.length < l.keys.length ? r : l;
  }
  if (isOr(node)) {
    const l = keyConstraint(node.left, tables);
    const r = keyConstraint(node.right, tables);
    return l === null || r === null ? null : { keys: [...l.keys, ...r.keys] };
  }
  return null;
}

function comparisonConstraint(node: BinaryOperationNode, tables: readonly ScopeTable[]): KeyConstraint | null {
  const operator = operatorOf(node);
  if (operator === '=' || operator === '==') {
    const left = keyTableOf(node.leftOperand, tables);
    if (left !== undefined) return literalConstraint(node.rightOperand, left.key!);
    const right = keyTableOf(node.rightOperand, tables);
    if (right !== undefined) return literalConstraint(node.leftOperand, right.key!);
    return null;
  }
  if (operator === 'in') {
    const table = keyTableOf(node.leftOperand, tables);
    const keys = table === undefined ? null : listValues(node.rightOperand, table.key!);
    return keys === null ? null : { keys: keys.map(table!.key!.canonical), list: node.rightOperand };
  }
  return null;
}

function operatorOf(node: BinaryOperationNode): string | undefined {
  return isOperator(node.operator) ? node.operator.operator : undefined;
}

function literalConstraint(node: OperationNode, key: ShardKeySpec): KeyConstraint | null {
  const value = literalKey(node, key);
  return value === undefined ? null : { keys: [key.canonical(value)] };
}

/**
 * The key a literal operand compared with `key`'s column holds; `undefined` for an expression.
 * A literal that cannot be a key (null, an object) is refused: the key contract never routes it.
 */
export function literalKey(node: OperationNode, key: ShardKeySpec): unknown {
  if (!isValue(node)) return undefined;
  const value = node.value;
  if (value === null || typeof value === 'object') throw invalidShardKeyValue(value, key.table, key.column);
  return value;
}

function listValues(node: OperationNode, key: ShardKeySpec): unknown[] | null {
  if (isPrimitiveValueList(node)) {
    const values = node.values;
    for (const v of values) if (v === null || typeof v === 'object') throw invalidShardKeyValue(v, key.table, key.column);
    return [...values];
  }
  if (isValueList(node)) {
    const values = node.values.map((item) => literalKey(item, key));
    return values.every((v) => v !== undefined) ? values : null;
  }
  return null;
}

/** The sharded table whose key column `node` names, if it does. */
function keyTableOf(node: OperationNode, tables: readonly ScopeTable[]): ScopeTable | undefined {
  let column: string | undefined;
  let tableRef: string | undefined;
  if (isReference(node)) {
    if (!isColumn(node.column)) return undefined;
    column = node.column.column.name;
    tableRef = node.table?.table.identifier.name;
  } else if (isColumn(node)) {
    column = node.column.name;
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
export function unlinkedTables(
  sharded: readonly ScopeTable[],
  tables: readonly ScopeTable[],
  joins: readonly JoinNode[] | undefined,
  where: OperationNode | undefined,
): readonly string[] | undefined {
  if (sharded.length < 2) return undefined;
  const links: [ScopeTable, ScopeTable][] = [];
  const collect = (condition: OperationNode | undefined): void => {
    if (condition === undefined) return;
    if (isAnd(condition)) {
      collect(condition.left);
      collect(condition.right);
    } else if (isParens(condition)) {
      collect(condition.node);
    } else if (isBinaryOperation(condition)) {
      if (operatorOf(condition) !== '=') return;
      const a = keyTableOf(condition.leftOperand, tables);
      const b = keyTableOf(condition.rightOperand, tables);
      if (a !== undefined && b !== undefined && a !== b) links.push([a, b]);
    }
  };
  for (const join of joins ?? []) collect(join.on?.on);
  collect(where);

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
