/**
 * Type names for scatter merges, from the type OIDs of the shards' row descriptions. Built-in
 * types have fixed OIDs (a table, no query); any other OID (an enum, a type the merge refuses) is
 * read from `pg_type` on the shard that reported it, once per dialect, since the OIDs of user
 * types differ from one database to another. An enum's order is its labels' `enumsortorder`,
 * which only the database knows: the labels are read with the name, and again when a value shows
 * a label not read before (after `ALTER TYPE … ADD VALUE`). PostgreSQL never reorders existing
 * labels, so a cached list stays right for the labels it holds.
 */
import { CompiledQuery, type QueryResult } from 'kysely';
import { BUILT_IN_TYPE_NAMES } from '../scatter/pg-type-oids';
import { FieldTypes, fieldPositions } from '../scatter/scatter-field-types';
import type { ScatterPlan } from '../scatter/scatter-plan';
import type { RowDescription } from './held-clients';
import { ErrorCodes } from '../../kernel/errors';
import { RoutingError } from '../sharding-errors';

type Row = Record<string, unknown>;

/** A type as the merge needs it: its name, and its labels in order when it (or its element type) is an enum. */
interface TypeInfo {
  readonly name: string;
  readonly labels: readonly string[] | null;
}

const TYPES_SQL = `select t.oid::int8 as oid, format_type(t.oid, null) as name,
  (select array_agg(e.enumlabel::text order by e.enumsortorder) from pg_enum e
    where e.enumtypid = case when t.typcategory = 'A' then t.typelem else t.oid end) as labels
  from pg_type t where t.oid = any($1::oid[])`;

/**
 * One shard's part of a merge: its database (for OIDs of user types), its row description (none
 * when its result had no `fields`: refused with a coded error), and how to read its catalog.
 */
export interface DescribedShard {
  /** The shard's id, named in errors. */
  readonly id: string;
  /** Identifies the shard's database (its primary's URL: replicas are copies with the same OIDs). */
  readonly database: string;
  readonly description: RowDescription | undefined;
  /** Runs a catalog read on the shard (a replica may serve it). */
  read(query: CompiledQuery): Promise<QueryResult<Row>>;
}

/** Type names and enum labels by OID, per shard database, for one dialect. */
export class ScatterTypeNames {
  readonly #byDatabase = new Map<string, Map<number, TypeInfo>>();

  /**
   * The types of `plan`'s compared values on each of `shards` (those that returned rows), checked
   * to agree; `undefined` when the plan compares no value whose type a shard gives. `refresh`
   * reads the types of user OIDs (and their enum labels) again. Synchronous (no promise) when no
   * catalog read is needed, the common case of built-in types.
   */
  lookup(plan: ScatterPlan, shards: readonly DescribedShard[], refresh = false): FieldTypes | undefined | Promise<FieldTypes> {
    if (plan.typeFields.length === 0 || shards.length === 0) return undefined;
    const oids = shards.map((shard) => this.#oidsOf(plan, shard));
    const reads = shards.map((shard, i) => this.#readMissing(shard, oids[i]!, refresh)).filter((read) => read !== undefined);
    const build = (): FieldTypes => {
      const types = new FieldTypes();
      shards.forEach((shard, i) => noteTypes(types, plan, shard, this.#infos(shard, oids[i]!)));
      return types;
    };
    return reads.length === 0 ? build() : Promise.all(reads).then(build);
  }

  /**
   * Adds `shard`'s types of `plan`'s compared values to `types` (a stream's, as each shard's first
   * rows arrive). A user type is read only the first time: a stream holds its connection's
   * clients, so a read takes another one (see {@link forgetUserTypes} for labels added since).
   */
  async addTo(types: FieldTypes, plan: ScatterPlan, shard: DescribedShard): Promise<void> {
    if (plan.typeFields.length === 0) return;
    const oids = this.#oidsOf(plan, shard);
    await this.#readMissing(shard, oids, false);
    noteTypes(types, plan, shard, this.#infos(shard, oids));
  }

  /** Forgets every user type read (a stream met an enum label read before it was added): the next statement reads them again. */
  forgetUserTypes(): void {
    this.#byDatabase.clear();
  }

  #oidsOf(plan: ScatterPlan, shard: DescribedShard): number[] {
    const oids = shard.description?.oids ?? [];
    if (oids.length === 0) {
      throw new RoutingError(
        ErrorCodes.UNSUPPORTED_SCATTER,
        `Shard "${shard.id}" returned rows without their row description, which a scatter merge reads its compared values' types from: a custom createPool must return pg's results (with \`fields\`), and a custom cursor class must pass its third constructor argument on to pg-cursor.`,
        { unsupported: 'rows without a row description', shard: shard.id },
      );
    }
    return fieldPositions(plan.fields, plan.typeFields, oids.length).map((at) => oids[at]!);
  }

  #known(shard: DescribedShard): Map<number, TypeInfo> {
    let known = this.#byDatabase.get(shard.database);
    if (known === undefined) this.#byDatabase.set(shard.database, (known = new Map()));
    return known;
  }

  /** Reads the user types among `oids` the cache lacks (all of them with `refresh`); `undefined` when there are none. */
  #readMissing(shard: DescribedShard, oids: readonly number[], refresh: boolean): Promise<void> | undefined {
    const known = this.#known(shard);
    const missing = [...new Set(oids.filter((oid) => !BUILT_IN_TYPE_NAMES.has(oid) && (refresh || !known.has(oid))))];
    if (missing.length === 0) return undefined;
    return shard.read(CompiledQuery.raw(TYPES_SQL, [missing])).then(({ rows }) => {
      for (const row of rows as { oid: string; name: string; labels: string[] | null }[]) known.set(Number(row.oid), { name: row.name, labels: row.labels });
    });
  }

  #infos(shard: DescribedShard, oids: readonly number[]): TypeInfo[] {
    const known = this.#known(shard);
    return oids.map((oid) => {
      const builtIn = BUILT_IN_TYPE_NAMES.get(oid);
      return builtIn !== undefined ? { name: builtIn, labels: null } : (known.get(oid) ?? { name: `an unknown type (oid ${oid})`, labels: null });
    });
  }
}

function noteTypes(types: FieldTypes, plan: ScatterPlan, shard: DescribedShard, infos: readonly TypeInfo[]): void {
  if (shard.description !== undefined) types.useParsers(shard.description.parserOf);
  const labels = new Map<string, readonly string[]>();
  for (const info of infos) if (info.labels !== null) labels.set(info.name.endsWith('[]') ? info.name.slice(0, -2) : info.name, info.labels);
  types.add(shard.id, plan.typeFields, infos.map((info) => info.name), labels);
}
