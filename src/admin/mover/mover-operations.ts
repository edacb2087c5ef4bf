/**
 * The operations an operator runs: add a shard, drain one, move slot ranges, rebalance. Each
 * returns a {@link MoveResult}; none throws for an operational outcome.
 */
import type { Client } from 'pg';
import type { Topology } from '../../cluster/topology';
import { MoveRefusedError } from './mover-errors';
import { migrateShards, type MigrateShardsOptions } from '../shard-migrations';
import type { MoverOptions } from './mover-session';
import { evenShares, planDrain, planMoveSlots, planRebalance, type SlotTransfer } from './move-plan';
import type { MoveResult } from './move-result';
import { startMove } from './move-start';
import { parseSlotRanges } from './slot-ranges';
import type { ShardedTableSpec } from './shard-guard-sql';
import { planUnshardedStep, tableRowCounts, unshardedHolder, unshardedTables, type UnshardedOptions } from './unsharded-plan';
import { TOPOLOGY_CATALOG_DEFAULTS } from '../topology-catalog';
import { nullKeyRows } from './slot-checksum';
import { readLocked } from './plan-reads';

/** Migrations `add` runs on the new shard before comparing schemas (as `migrateShards` takes them, without `shards`). */
export type NewShardMigrations = Omit<MigrateShardsOptions, 'shards' | 'onShard'>;

/** The shard `add` registers. */
export interface NewShard {
  readonly id: string;
  readonly primary: string;
  readonly replicas?: readonly string[];
}

/**
 * Registers `shard` (owning no slot), brings its schema up with `migrations` when given (the
 * shards' own Kysely migrations, through `migrateShards`), checks its schema against the others'
 * (a readable diff when they differ), installs the slot function and the guards, then moves slots
 * to it: an equal share taken from the shards that own the most, or `slots`.
 */
export function addShard(options: MoverOptions & { readonly shard: NewShard; readonly slots?: string; readonly migrations?: NewShardMigrations }): Promise<MoveResult> {
  return startMove('add', options, async (_frame, latest) => {
    const existing = latest.shardById(options.shard.id);
    // An add run again (after an abort, say) names the shard as before; another URL means another database.
    if (existing !== undefined && !sameUrl(existing.primary.url, options.shard.primary)) {
      throw new MoveRefusedError('shard-exists', `Shard "${options.shard.id}" is already in the topology, at ${existing.primary.redactedUrl}, not at the URL given: choose another id for a new shard (or give the URL it has to move slots to it).`, { shardId: options.shard.id });
    }
    const pending = options.migrations !== undefined && existing === undefined && options.dryRun === true;
    if (options.migrations !== undefined && existing === undefined && !pending) {
      // The new shard is not part of the cluster yet: bringing its schema up is no change to the cluster.
      // Under the move's statement deadline, unless the migrations name their own.
      const statementTimeoutMillis = options.migrations.statementTimeoutMillis ?? options.tuning?.statementTimeoutMillis;
      const run = await migrateShards({ ...options.migrations, ...(statementTimeoutMillis === undefined ? {} : { statementTimeoutMillis }), shards: [{ id: options.shard.id, url: options.shard.primary }] });
      if (run.error !== undefined) {
        throw new MoveRefusedError('migration-failed', `The migrations failed on the new shard "${options.shard.id}": ${(run.error as Error).message ?? String(run.error)}`, { shardId: options.shard.id });
      }
    }
    const topology = existing === undefined ? latest.withShardAdded({ id: options.shard.id, primary: options.shard.primary, replicas: [...(options.shard.replicas ?? [])] }) : latest;
    const transfers = options.slots !== undefined ? planMoveSlots(topology, parseSlotRanges(options.slots, topology.slotCount), options.shard.id) : equalShareFor(topology, options.shard.id);
    return {
      topology,
      transfers,
      ...(existing === undefined ? { publishFirst: topology } : {}),
      alsoCheck: [latest.shards[0]!.id, options.shard.id],
      ...(pending ? { migrationsPending: options.shard.id } : {}),
    };
  });
}

/**
 * Moves every slot off `shardId`, evenly over the others, then removes it from the topology. When
 * it holds the unsharded tables (the catalog's record, else the first shard or `unshardedFrom`),
 * they move too, after the slots, to `unshardedTo` (default: the shard that will own the most
 * slots), and the topology then records the new holder. Refuses the last shard, a shard holding
 * rows whose shard key is NULL, and a shard that is not the holder yet holds rows of unsharded
 * tables (routers do not read them: delete them first).
 */
export function drainShard(options: MoverOptions & UnshardedOptions & { readonly shardId: string }): Promise<MoveResult> {
  return startMove('drain', options, async (frame, latest, planning) => {
    const transfers = planDrain(latest, options.shardId);
    const shard = latest.shardById(options.shardId)!;
    const holder = unshardedHolder(latest, options);
    if (options.unshardedTo !== undefined && holder !== options.shardId) {
      throw new MoveRefusedError('unsharded-target', `--unsharded-to applies to a drain of the shard holding the unsharded tables ("${holder}"), not "${options.shardId}".`, { shardId: options.shardId, holder });
    }
    const catalogSchema = options.schema ?? TOPOLOGY_CATALOG_DEFAULTS.schema;
    return planning.run(shard, async (c) => {
      const nullKeys = await nullKeyTables(c, options.shardId, frame.tables);
      if (nullKeys.length > 0) {
        throw new MoveRefusedError('null-keys', `Shard "${options.shardId}" holds rows whose shard key is NULL (${nullKeys.map((t) => `${t.table}: ${t.rows}`).join(', ')}); no slot owns them, so a drain would leave them behind: set their keys or delete them, then drain.`, {
          shardId: options.shardId,
          tables: nullKeys.map((t) => t.table),
        });
      }
      if (holder === options.shardId) {
        const unsharded = await planUnshardedStep(latest, options.shardId, c, frame.tables, catalogSchema, transfers, options, planning);
        return { topology: latest, transfers, removeShard: options.shardId, unsharded };
      }
      const stray = (await tableRowCounts(c, options.shardId, await unshardedTables(c, frame.tables, catalogSchema))).filter((t) => t.rows > 0).map((t) => t.name);
      if (stray.length > 0) {
        throw new MoveRefusedError('unsharded-tables', `Shard "${options.shardId}" holds rows of tables that are not sharded (${stray.join(', ')}), but the unsharded tables live on "${holder}", so routers never read them here: delete them (or, if your apps' unshardedShardId names "${options.shardId}", pass --unsharded-from ${options.shardId}), then drain.`, {
          shardId: options.shardId,
          holder,
          tables: stray,
        });
      }
      return { topology: latest, transfers, removeShard: options.shardId };
    });
  });
}

/** Moves the slots in `slots` (`0-99,200`) to shard `to`. */
export function moveSlots(options: MoverOptions & { readonly slots: string; readonly to: string }): Promise<MoveResult> {
  return startMove('move', options, async (_frame, latest) => ({ topology: latest, transfers: planMoveSlots(latest, parseSlotRanges(options.slots, latest.slotCount), options.to) }));
}

/** Evens out slot counts over every shard; a cluster already balanced is a success with nothing moved (`nothingToMove`). */
export function rebalanceShards(options: MoverOptions): Promise<MoveResult> {
  return startMove('rebalance', options, async (_frame, latest) => ({
    topology: latest,
    transfers: planRebalance(latest),
    nothingToMoveIsDone: 'Already balanced: every shard owns its even share of slots; nothing to move.',
  }));
}

/** Slots for `target` to reach its equal share, taken from the shards owning the most. */
function equalShareFor(topology: Topology, target: string): SlotTransfer[] {
  const ids = topology.shards.map((s) => s.id);
  const share = evenShares(ids, topology.slotCount).get(target) ?? 0;
  const need = share - topology.slotsOf(target).length;
  if (need <= 0) return [];
  const givers = ids.filter((id) => id !== target).map((id) => ({ id, slots: topology.slotsOf(id) }));
  const taken = new Map<string, number[]>();
  for (let n = 0; n < need; n++) {
    givers.sort((a, b) => b.slots.length - a.slots.length);
    const giver = givers[0]!;
    const slot = giver.slots.pop()!;
    taken.set(giver.id, [...(taken.get(giver.id) ?? []), slot]);
  }
  return [...taken].map(([source, slots]) => Object.freeze({ source, target, slots: Object.freeze(slots.sort((a, b) => a - b)) }));
}

/** The sharded tables of `shardId` holding rows whose shard key is NULL, with their counts (each read once its lock is had in time: `plan-reads.ts`). */
async function nullKeyTables(client: Client, shardId: string, sharded: readonly ShardedTableSpec[]): Promise<{ table: string; rows: number }[]> {
  const out: { table: string; rows: number }[] = [];
  for (const table of sharded) {
    const rows = await readLocked(client, { shardId, table: table.name, purpose: 'count the rows whose shard key is NULL', read: () => nullKeyRows(client, table) });
    if (rows > 0) out.push({ table: table.name, rows });
  }
  return out;
}

/** Whether two connection URLs name the same server, database and user (spelling aside). */
function sameUrl(a: string, b: string): boolean {
  try {
    return new URL(a).href === new URL(b).href;
  } catch {
    return a === b;
  }
}
