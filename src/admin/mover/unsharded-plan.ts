/**
 * Planning a drain's unsharded step: which shard holds the unsharded tables (the topology's
 * record, else the first shard, the dialect's default), which tables they are, where they go, and
 * the refusals made before anything changes: an unknown target or the drained shard itself, a
 * schema that differs on the target, a target already holding rows of them, and (when the catalog
 * records no holder) another shard holding rows of them, which says the apps' `unshardedShardId`
 * may name it.
 */
import type { Client } from 'pg';
import type { Topology } from '../../cluster/topology';
import { MoveRefusedError } from './mover-errors';
import type { ShardedTableSpec } from './shard-guard-sql';
import { copyShapes } from './unsharded-copy';
import { describeTables, schemaDiff } from './schema-compare';
import type { PlanSessions } from './plan-sessions';
import type { SlotTransfer } from './move-plan';
import { readLocked } from './plan-reads';

/** Per-shard bookkeeping tables Kysely's migrator keeps (every shard has its own; never moved). */
const MIGRATION_TABLES: ReadonlySet<string> = new Set(['kysely_migration', 'kysely_migration_lock']);

/** A table of the unsharded step and its rows on the source when planned. */
export interface UnshardedTablePlan {
  readonly name: string;
  readonly rows: number;
}

/** The unsharded part of a drain's plan. */
export interface UnshardedPlan {
  readonly source: string;
  readonly target: string;
  readonly tables: readonly UnshardedTablePlan[];
}

/** Drain options about the unsharded tables. */
export interface UnshardedOptions {
  /** Where the unsharded tables go when the drained shard holds them. @default the remaining shard that will own the most slots (the first of them on a tie) */
  readonly unshardedTo?: string;
  /**
   * The shard holding the unsharded tables when the catalog records none yet: the shard your apps'
   * `unshardedShardId` names. Refused when the catalog records another one. @default the first shard
   */
  readonly unshardedFrom?: string;
}

/** The user tables of a shard that are not sharded: not partitions, not PostgreSQL's or kysely-scale's, not the migrator's. */
export async function unshardedTables(client: Client, sharded: readonly ShardedTableSpec[], catalogSchema: string): Promise<string[]> {
  const { rows } = await client.query<{ name: string; schema: string }>(
    `select c.relname as name, n.nspname as schema from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and not c.relispartition
        and n.nspname not in ('pg_catalog', 'information_schema', 'kysely_scale', $1) and n.nspname not like 'pg\\_%'
      order by 2, 1`,
    [catalogSchema],
  );
  const shardedNames = new Set(sharded.flatMap((t) => (t.name.includes('.') ? [t.name] : [t.name, `public.${t.name}`])));
  return rows.filter((r) => !shardedNames.has(`${r.schema}.${r.name}`) && !MIGRATION_TABLES.has(r.name)).map((r) => `${r.schema}.${r.name}`);
}

/**
 * Rows of each table on `shardId` (exact counts: unsharded tables are reference data, small by
 * design), each counted once its lock is had in time (`plan-reads.ts`: a migration's lock refuses
 * the drain, naming who holds it).
 */
export async function tableRowCounts(client: Client, shardId: string, tables: readonly string[]): Promise<UnshardedTablePlan[]> {
  const out: UnshardedTablePlan[] = [];
  // A table's own rows (`only`), as the step copies them: an inheritance child's rows are its own table's.
  for (const shape of await copyShapes(client, tables)) {
    const read = async (): Promise<number> => Number((await client.query<{ n: string }>(`select count(*) as n from ${shape.from}`)).rows[0]?.n ?? 0);
    const rows = await readLocked(client, { shardId, table: shape.table, purpose: 'count the rows of the unsharded tables', read });
    out.push(Object.freeze({ name: shape.table, rows }));
  }
  return out;
}

/** The shard holding the unsharded tables as the mover sees it; refuses an `unshardedFrom` that contradicts the catalog. */
export function unshardedHolder(topology: Topology, options: UnshardedOptions): string {
  const from = options.unshardedFrom;
  if (from !== undefined && topology.shardById(from) === undefined) {
    throw new MoveRefusedError('unknown-shard', `No shard "${from}" in topology version ${topology.version} (--unsharded-from).`, { shardId: from });
  }
  if (topology.unshardedShardId !== undefined) {
    if (from !== undefined && from !== topology.unshardedShardId) {
      throw new MoveRefusedError('unsharded-holder', `The catalog records shard "${topology.unshardedShardId}" as the holder of the unsharded tables, not "${from}" (--unsharded-from): routers follow the catalog.`, {
        holder: topology.unshardedShardId,
        unshardedFrom: from,
      });
    }
    return topology.unshardedShardId;
  }
  return from ?? topology.shards[0]!.id;
}

/** The remaining shard that owns the most slots once `transfers` are done (the first in shard order on a tie). */
export function defaultUnshardedTarget(topology: Topology, drained: string, transfers: readonly SlotTransfer[]): string {
  let best: string | undefined;
  let most = -1;
  for (const shard of topology.shards) {
    if (shard.id === drained) continue;
    const owned = topology.slotsOf(shard.id).length + transfers.filter((t) => t.target === shard.id).reduce((n, t) => n + t.slots.length, 0);
    if (owned > most) {
      most = owned;
      best = shard.id;
    }
  }
  return best!;
}

/**
 * The unsharded step of draining `drained`, which holds the unsharded tables (`sourceClient` is a
 * session on it): the target checked, schemas compared, the target's copies empty, and no other
 * shard holding rows when the catalog records no holder and none was named; the other shards are
 * read through `planning`'s sessions (a shard that stops answering refuses the drain).
 */
export async function planUnshardedStep(
  topology: Topology,
  drained: string,
  sourceClient: Client,
  sharded: readonly ShardedTableSpec[],
  catalogSchema: string,
  transfers: readonly SlotTransfer[],
  options: UnshardedOptions,
  planning: PlanSessions,
): Promise<UnshardedPlan> {
  const target = options.unshardedTo ?? defaultUnshardedTarget(topology, drained, transfers);
  const targetShard = topology.shardById(target);
  if (targetShard === undefined) {
    throw new MoveRefusedError('unknown-shard', `No shard "${target}" in topology version ${topology.version} (--unsharded-to; shards: ${topology.shards.map((s) => s.id).join(', ')}).`, { shardId: target });
  }
  if (target === drained) {
    throw new MoveRefusedError('unsharded-target', `The unsharded tables cannot go to "${drained}": it is the shard being drained. Name another shard with --unsharded-to.`, { shardId: target });
  }
  const tables = await unshardedTables(sourceClient, sharded, catalogSchema);
  const specs = tables.map((name) => ({ name, keyColumn: '' }));
  const counts = await tableRowCounts(sourceClient, drained, tables);
  await planning.run(targetShard, async (targetClient) => {
    const diff = schemaDiff({ id: drained, lines: await describeTables(sourceClient, specs) }, { id: target, lines: await describeTables(targetClient, specs) });
    if (diff.length > 0) {
      throw new MoveRefusedError('schema-mismatch', `The unsharded tables of "${drained}" and "${target}" differ; bring them to the same schema (run the migrations) first:\n${diff.join('\n')}`, {
        shards: [drained, target],
        diff,
      });
    }
    const occupied = (await tableRowCounts(targetClient, target, tables)).filter((t) => t.rows > 0);
    if (occupied.length > 0) {
      throw new MoveRefusedError(
        'unsharded-target-not-empty',
        `Shard "${target}" already holds rows of unsharded tables (${occupied.map((t) => `${t.name}: ${t.rows}`).join(', ')}). Routers do not read them (the holder is "${drained}"), ` +
          `but the drain does not overwrite them: empty them on "${target}" (truncate ${occupied.map((t) => t.name).join(', ')}) or choose another shard with --unsharded-to.`,
        { shardId: target, tables: occupied.map((t) => t.name), rows: occupied.map((t) => t.rows) },
      );
    }
  });
  if (topology.unshardedShardId === undefined && options.unshardedFrom === undefined) {
    for (const shard of topology.shards) {
      if (shard.id === drained || shard.id === target) continue;
      const occupied = await planning.run(shard, async (c) => (await tableRowCounts(c, shard.id, tables)).filter((t) => t.rows > 0));
      if (occupied.length > 0) {
        throw new MoveRefusedError(
          'unsharded-holder',
          `The catalog records no holder of the unsharded tables, so the drain takes the first shard, "${drained}"; but shard "${shard.id}" also holds rows of them (${occupied.map((t) => `${t.name}: ${t.rows}`).join(', ')}). ` +
            `Name the shard your apps' unshardedShardId names with --unsharded-from.`,
          { shardId: shard.id, tables: occupied.map((t) => t.name) },
        );
      }
    }
  }
  return Object.freeze({ source: drained, target, tables: counts });
}
