import {
  AliasNode,
  ColumnNode,
  IdentifierNode,
  InsertQueryNode,
  ReferenceNode,
  ReturningNode,
  SelectionNode,
  OperationNodeTransformer,
  PrimitiveValueListNode,
  ValueListNode,
  ValuesNode,
  type OperationNode,
  type RootOperationNode,
  type ValuesItemNode,
} from 'kysely';

class ReplaceNode extends OperationNodeTransformer {
  constructor(
    private readonly target: OperationNode,
    private readonly replacement: OperationNode,
  ) {
    super();
  }

  override transformNode<T extends OperationNode | undefined>(node: T): T {
    if (node === this.target) return this.replacement as T;
    return super.transformNode(node);
  }
}

/** A copy of `root` whose `in (…)` list node `list` keeps only the entries at `indexes`. */
export function withListSubset(root: RootOperationNode, list: OperationNode, indexes: readonly number[]): RootOperationNode {
  let subset: OperationNode;
  if (list.kind === 'PrimitiveValueListNode') {
    const values = (list as PrimitiveValueListNode).values;
    subset = PrimitiveValueListNode.create(indexes.map((i) => values[i]));
  } else {
    const values = (list as ValueListNode).values;
    subset = ValueListNode.create(indexes.map((i) => values[i]!));
  }
  return new ReplaceNode(list, subset).transformNode(root);
}

/** A copy of an insert that keeps only the value rows at `indexes`. */
export function withInsertRows(root: InsertQueryNode, indexes: readonly number[]): InsertQueryNode {
  const rows = (root.values as ValuesNode).values;
  const kept: ValuesItemNode[] = indexes.map((i) => rows[i]!);
  return InsertQueryNode.cloneWith(root, { values: ValuesNode.create(kept) });
}

/** The hidden RETURNING column that carries each returned row's shard key (see {@link withReturnedKey}). */
export const RETURNED_KEY = '__ks_key';

/** A copy of an insert whose RETURNING also returns the shard key column as {@link RETURNED_KEY}. */
export function withReturnedKey(root: InsertQueryNode, column: string): InsertQueryNode {
  const key = SelectionNode.create(AliasNode.create(ReferenceNode.create(ColumnNode.create(column)), IdentifierNode.create(RETURNED_KEY)));
  return InsertQueryNode.cloneWith(root, { returning: ReturningNode.cloneWithSelections(root.returning!, [key]) });
}
