/**
 * The types of a merge's compared values, read from the shards' row descriptions: every shard
 * reports each field's type OID with its rows, so the shard statement needs no `pg_typeof` column.
 * A plan names its type fields by position ({@link TypeField}); this module finds them in a shard's
 * description and checks that every shard gives each the same type (shards whose schemas drifted
 * apart are refused, never merged by two different orders).
 *
 * @packageDocumentation
 */
import type { TypeField, TypeLookup } from './scatter-compare';
import type { FieldLayout } from './scatter-plan';
import { incomparable } from './scatter-pg-text';
import { BUILT_IN_TYPE_NAMES } from './pg-type-oids';

const BUILT_IN_TYPE_OIDS: ReadonlyMap<string, number> = new Map([...BUILT_IN_TYPE_NAMES].map(([oid, name]) => [name, oid]));
import { unsupportedScatter } from './scatter-analyze';

/**
 * The position in a row description of `fieldCount` fields of each of `fields`.
 *
 * @throws RoutingError `E_UNSUPPORTED_SCATTER` when the description does not have the fields the
 *   plan expects (a raw selection that yields several columns).
 */
export function fieldPositions(layout: FieldLayout, fields: readonly TypeField[], fieldCount: number): number[] {
  if ((layout.visible !== undefined && fieldCount !== layout.visible + layout.hidden) || fieldCount < layout.hidden) {
    throw unsupportedScatter(
      `a selection that yields ${fieldCount - layout.hidden} columns where the query names ${layout.visible ?? 'fewer'}`,
      'Select each expression as its own column (raw SQL with a comma in a selection cannot be merged)',
    );
  }
  return fields.map((field) => (field >= 0 ? field : fieldCount - layout.hidden - field - 1));
}

/** A {@link TypeLookup} filled shard by shard as their row descriptions arrive. */
export class FieldTypes implements TypeLookup {
  readonly #names = new Map<TypeField, { readonly name: string; readonly shard: string }>();
  readonly #labels = new Map<string, readonly string[]>();
  /** Present once the shards' type parsers are known: see {@link TypeLookup.parse}. */
  parse?: (typeName: string, text: string) => unknown;

  /** The app's pg type parsers (by OID) the shards' rows were parsed with; merged aggregates are handed to them. */
  useParsers(parserOf: (oid: number) => (text: string) => unknown): void {
    this.parse ??= (typeName, text) => {
      const oid = BUILT_IN_TYPE_OIDS.get(typeName);
      if (oid === undefined) throw incomparable(`a merged aggregate of type ${typeName}`);
      return parserOf(oid)(text);
    };
  }

  /**
   * Notes the type names shard `shard` gives `fields` (`names[i]` for `fields[i]`), and the labels
   * of its enum types (by scalar type name).
   *
   * @throws RoutingError `E_UNSUPPORTED_SCATTER` when a shard noted before gave a field another type.
   */
  add(shard: string, fields: readonly TypeField[], names: readonly string[], labels: ReadonlyMap<string, readonly string[]>): void {
    fields.forEach((field, i) => {
      const name = names[i]!;
      const seen = this.#names.get(field);
      if (seen === undefined) this.#names.set(field, { name, shard });
      else if (seen.name !== name) {
        throw unsupportedScatter(
          `a compared column of type ${seen.name} on shard "${seen.shard}" and ${name} on shard "${shard}"`,
          'Bring the shards to one schema (kysely-scale-admin migrate) before querying across them',
        );
      }
    });
    // The first shard's labels order an enum; a shard that orders it otherwise fails the merge's order check.
    for (const [name, list] of labels) if (!this.#labels.has(name)) this.#labels.set(name, list);
  }

  fieldType(field: TypeField): string {
    const seen = this.#names.get(field);
    if (seen === undefined) throw incomparable('a compared value whose type no shard described');
    return seen.name;
  }

  enumLabels(typeName: string): readonly string[] | undefined {
    return this.#labels.get(typeName);
  }
}
