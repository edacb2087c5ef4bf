/**
 * The columns a scatter adds to the statement every shard runs, and where the merge finds the types
 * of the values it compares in a shard's row description.
 *
 * @packageDocumentation
 */
import { AliasNode, IdentifierNode, type OperationNode, RawNode, SelectionNode } from 'kysely';
import type { TypeField } from './scatter-compare';

/** Prefix of the hidden columns; a user's column may not start with it. */
export const HIDDEN_PREFIX = '__ks_';

/** The fields of a shard's row description: the shard query's own (`undefined` when a `*` hides how many), then `hidden` helper columns. */
export interface FieldLayout {
  readonly visible: number | undefined;
  readonly hidden: number;
}

export /** Builds the shard query's extra selections and their hidden names. */
class ShardSelections {
  readonly selections: SelectionNode[] = [];
  readonly hidden = new Set<string>();
  private counter = 0;
  private readonly types = new Map<OperationNode, TypeField>();
  private readonly texts = new Map<OperationNode, string>();

  /**
   * @param visible the shard query's own selections, in order, when each is one field of its row
   *   description (none is `*`); `undefined` otherwise.
   */
  constructor(private readonly visible: readonly SelectionNode[] | undefined) {}

  add(expression: OperationNode, prefix: string): string {
    const name = `${HIDDEN_PREFIX}${prefix}${this.counter++}`;
    this.selections.push(SelectionNode.create(AliasNode.create(expression, IdentifierNode.create(name))));
    this.hidden.add(name);
    return name;
  }

  /** Adds `expression` as a hidden column that is also the field giving its type. */
  addTyped(expression: OperationNode, prefix: string): { readonly name: string; readonly field: TypeField } {
    const name = this.add(expression, prefix);
    const field: TypeField = -this.selections.length;
    this.types.set(expression, field);
    return { name, field };
  }

  /**
   * The field whose type (in the shards' row descriptions, free of charge) is `expression`'s: the
   * selection itself when it is one of the visible fields, else a hidden copy of the expression.
   */
  typeField(expression: OperationNode, selection?: SelectionNode): TypeField {
    const at = selection === undefined || this.visible === undefined ? -1 : this.visible.indexOf(selection);
    if (at >= 0) return at;
    let field = this.types.get(expression);
    if (field === undefined) {
      this.add(expression, 'v');
      field = -this.selections.length; // hidden field h = length - 1, as -(h + 1)
      this.types.set(expression, field);
    }
    return field;
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

  /** Where the plan's type fields sit in a shard's row description. */
  layout(): FieldLayout {
    return Object.freeze({ visible: this.visible?.length, hidden: this.selections.length });
  }
}

