/**
 * Enum types for scatter merges: the merge knows built-in types by name, but an enum's order is its
 * labels' `enumsortorder`, which only the database knows. Before merging, the labels of every enum
 * type among the compared values are read from `pg_enum` (once per dialect; again when a value
 * shows a label the cache does not have, after `ALTER TYPE … ADD VALUE`). PostgreSQL never reorders
 * existing labels, so a cached list stays right for the labels it holds.
 */
import { CompiledQuery, type QueryResult } from 'kysely';
import { valueClassOf, type TypeLookup } from '../scatter/scatter-compare';
import type { ScatterPlan } from '../scatter/scatter-plan';

type Row = Record<string, unknown>;

const LABELS_SQL = `select t.name, (select array_agg(e.enumlabel::text order by e.enumsortorder) from pg_enum e where e.enumtypid = to_regtype(t.name)) as labels
  from unnest($1::text[]) as t(name)`;

/** Enum labels per type name (`null`: not an enum), per dialect. */
export class EnumTypeCache {
  readonly #labels = new Map<string, readonly string[] | null>();

  /**
   * The lookup for merging `rowsPerShard` of `scatter`: reads the labels of the types it does not
   * know by name (`refresh`: read them again) with `read` (a plain read of one shard, under the
   * replica read deadline). `undefined` when no value needs one.
   */
  async lookup(scatter: ScatterPlan, rowsPerShard: readonly (readonly Row[])[], read: (query: CompiledQuery) => Promise<QueryResult<Row>>, refresh = false): Promise<TypeLookup | undefined> {
    const unknown = new Set<string>();
    for (const column of scatter.typeColumns) {
      for (const rows of rowsPerShard) {
        const typeName = rows[0]?.[column];
        if (typeof typeName !== 'string') continue;
        const scalar = typeName.endsWith('[]') ? typeName.slice(0, -2) : typeName;
        if (valueClassOf(scalar) === 'other') unknown.add(scalar);
        break;
      }
    }
    if (unknown.size === 0) return undefined;
    const missing = [...unknown].filter((name) => refresh || !this.#labels.has(name));
    if (missing.length > 0) {
      const { rows } = await read(CompiledQuery.raw(LABELS_SQL, [missing]));
      for (const row of rows as { name: string; labels: string[] | null }[]) this.#labels.set(row.name, row.labels);
    }
    const labels = this.#labels;
    return { enumLabels: (typeName: string) => labels.get(typeName) ?? undefined };
  }
}
