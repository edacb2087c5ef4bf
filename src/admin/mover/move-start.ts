/**
 * Starting a move: refuse bad requests before anything changes (another open move, no tables,
 * unknown or unreachable shards, differing schemas, nothing to move), plan the batches with row
 * estimates, then (unless it is a dry run) install the guards, store the move and run it.
 */
import type { Client } from 'pg';
import type { Topology } from '../../cluster/topology';
import { systemClock } from '../../kernel/clock';
import { MoveRefusedError } from './mover-errors';
import { toResultError, withMover, type MoverFrame, type MoverOptions } from './mover-session';
import { splitTransfers, type SlotTransfer } from './move-plan';
import type { MoveBatch, MoveKind, UnshardedStep } from './move-record';
import type { UnshardedPlan } from './unsharded-plan';
import { rowsOf, unshardedOf, versionsOf, type MovePlanSummary, type MoveResult } from './move-result';
import { requireDistinctTables } from './table-identity';
import { withShardSession } from './shard-session';
import { planSessions, type PlanSessions } from './plan-sessions';
import { installGuard } from './shard-guard';
import { describeTables, schemaDiff } from './schema-compare';
import type { ShardedTableSpec } from './shard-guard-sql';
import { formatSlotRanges } from './slot-ranges';
import { runMove } from './move-runner';
import type { MoveTuning } from './move-context';
import { estimateMoveSeconds } from './move-estimate';
import { estimateTableRows } from './table-estimate';
import { PACE_SLICE_MILLIS, type ScanPace } from './scan-pacer';

/** What an operation decided: the transfers, on which topology, and what to publish first or remove last. */
export interface MoveDecision {
  readonly topology: Topology;
  readonly transfers: readonly SlotTransfer[];
  /** Published before the move starts (add: the topology with the new shard). */
  readonly publishFirst?: Topology;
  readonly removeShard?: string;
  /** Shards that must be reachable and match the schema, beyond the transfers' (add: the new shard). */
  readonly alsoCheck?: readonly string[];
  /** A dry run of an add with migrations: the new shard they would run on (its schema is compared after them, so only reached now). */
  readonly migrationsPending?: string;
  /** A drain of the holder of the unsharded tables: where they go (moved after the batches). */
  readonly unsharded?: UnshardedPlan;
  /** When nothing needs to move, succeed with this message instead of refusing (rebalance: a scheduled job must not fail on a balanced cluster). */
  readonly nothingToMoveIsDone?: string;
}

/** Runs an operation that moves slots. */
export async function startMove(kind: MoveKind, options: MoverOptions, decide: (frame: MoverFrame, topology: Topology, planning: PlanSessions) => Promise<MoveDecision>): Promise<MoveResult> {
  const clock = options.clock ?? systemClock;
  const started = clock.monotonicNow();
  let plan: MovePlanSummary | null = null;
  let moveId: number | null = null;
  const result = (fields: Partial<MoveResult>): MoveResult =>
    Object.freeze({ ok: false, operation: kind, dryRun: options.dryRun === true, moveId, status: 'refused', plan, versions: [], rowsCopied: 0, moveRowsCopied: 0, durationMillis: clock.monotonicNow() - started, error: null, ...fields });
  try {
    return await withMover(options, async (frame) => {
      const open = await frame.store.open();
      if (open !== undefined) throw new MoveRefusedError('overlap', `Move ${open.id} (${open.kind}) is not finished: resume or abort it first.`, { moveId: open.id });
      if (frame.tables.length === 0) throw new MoveRefusedError('no-tables', 'No sharded tables are registered: pass them (--table orders=user_id) once.');
      const latest = await frame.catalog.latest();
      if (latest === undefined) throw new MoveRefusedError('no-catalog', 'The catalog holds no topology: run init first.');
      const { tuning } = frame;
      // Until the plan is made nothing changes: a shard that stops answering refuses the operation (plan-sessions.ts).
      const planning = planSessions(kind, tuning, clock);
      const decision = await decide(frame, latest, planning);
      const batches = splitTransfers(decision.transfers, tuning.batchSlots);
      if (batches.length === 0 && decision.removeShard === undefined && decision.publishFirst === undefined) {
        if (decision.nothingToMoveIsDone !== undefined) {
          // Tables given for later commands are still checked (names of tables, each once) and registered.
          const first = decision.topology.shards[0]!;
          await planning.run(first, (client) => requireDistinctTables(client, first.id, frame.tables));
          await frame.registerGivenTables();
          plan = Object.freeze({ batches: [], slots: 0, estimatedRows: 0, estimatedSeconds: 0 });
          return result({ ok: true, status: options.dryRun === true ? 'planned' : 'done', nothingToMove: decision.nothingToMoveIsDone });
        }
        throw new MoveRefusedError('nothing-to-move', 'Nothing to move: every slot is already where it was asked to be.');
      }
      const unsharded = decision.unsharded;
      const involved = [...new Set([...batches.flatMap((b) => [b.source, b.target]), ...(decision.alsoCheck ?? []), ...(unsharded === undefined ? [] : [unsharded.source, unsharded.target])])];
      await checkShards(decision.topology, involved, frame.tables, planning, decision.migrationsPending);
      await frame.registerGivenTables();
      plan = await planSummary(decision, batches, frame.tables, tuning, planning, { clock, niceRatio: tuning.niceRatio, sliceMillis: PACE_SLICE_MILLIS, probeSlowMillis: 0 });
      options.onPlan?.(plan);
      if (options.dryRun === true) return result({ ok: true, status: 'planned' });
      const versions: number[] = [];
      if (decision.publishFirst !== undefined) {
        await frame.catalog.publish(decision.publishFirst, `${kind}: shard ${decision.alsoCheck?.join(', ') ?? ''} registered`);
        versions.push(decision.publishFirst.version);
      }
      await Promise.all(decision.topology.shards.map((s) => withShardSession(s.primary.url, (c) => installGuard(c, s.id, frame.tables, decision.topology.slotCount), planning.owner(s.id))));
      // rowsTotal is the plan's estimate (table-estimate.ts, times the slot share), not a count: progress shows it as one.
      const stored: MoveBatch[] = batches.map((b, index) => ({ index, source: b.source, target: b.target, slots: b.slots, phase: 'planned', rowsTotal: plan!.batches[index]!.estimatedRows }));
      const step: UnshardedStep | undefined =
        unsharded === undefined
          ? undefined
          : { source: unsharded.source, target: unsharded.target, tables: unsharded.tables.map((t) => t.name), phase: 'planned', rowsTotal: unsharded.tables.reduce((n, t) => n + t.rows, 0) };
      const move = await frame.store.create(kind, frame.tables, stored, decision.removeShard, step);
      moveId = move.id;
      const ctx = frame.context(move);
      try {
        await runMove(ctx);
      } catch (error) {
        move.error = toResultError(error).message;
        await frame.store.save(move).catch(() => undefined);
        return result({ status: 'open', error: toResultError(error), rowsCopied: ctx.rowsCopied, moveRowsCopied: rowsOf(move), versions: [...versions, ...versionsOf(move)], ...unshardedOf(move) });
      } finally {
        await ctx.close();
      }
      const final = await frame.catalog.latest();
      if (decision.removeShard !== undefined && final !== undefined && final.shardById(decision.removeShard) === undefined) versions.push(final.version);
      return result({ ok: true, status: 'done', rowsCopied: ctx.rowsCopied, moveRowsCopied: rowsOf(move), versions: [...versions, ...versionsOf(move)].sort((a, b) => a - b), ...unshardedOf(move) });
    });
  } catch (error) {
    return result({ status: moveId === null ? 'refused' : 'open', error: toResultError(error) });
  }
}

/** Every involved shard answers, and its sharded tables have the same shape as the first one's (but `unmigrated`'s, whose migrations have not run). */
async function checkShards(topology: Topology, shardIds: readonly string[], tables: readonly ShardedTableSpec[], planning: PlanSessions, unmigrated?: string): Promise<void> {
  const described: { id: string; lines: string[] }[] = [];
  for (const id of shardIds) {
    const shard = topology.shardById(id);
    if (shard === undefined) throw new MoveRefusedError('unknown-shard', `No shard "${id}" in the topology.`, { shardId: id });
    await planning.run(shard, async (client) => {
      if (id !== unmigrated) {
        await requireDistinctTables(client, id, tables);
        described.push({ id, lines: await describeTables(client, tables) });
      }
    });
  }
  const [first, ...rest] = described;
  for (const other of rest) {
    const diff = schemaDiff(first!, other);
    if (diff.length > 0) {
      throw new MoveRefusedError('schema-mismatch', `The sharded tables of "${first!.id}" and "${other.id}" differ; bring them to the same schema (run the migrations) first:\n${diff.join('\n')}`, {
        shards: [first!.id, other.id],
        diff,
      });
    }
  }
}

/** The plan the operator sees first; its row estimates read the shards paced by `pace` (the app is running). */
async function planSummary(decision: MoveDecision, batches: readonly SlotTransfer[], tables: readonly ShardedTableSpec[], tuning: MoveTuning, planning: PlanSessions, pace: ScanPace): Promise<MovePlanSummary> {
  const shardRows = new Map<string, number>();
  for (const id of new Set(batches.flatMap((b) => [b.source, b.target]))) {
    const shard = decision.topology.shardById(id);
    shardRows.set(id, shard === undefined ? 0 : await planning.run(shard, (c) => tableRows(c, tables, pace)));
  }
  const rowsPerSlot = (id: string): number => (shardRows.get(id) ?? 0) / Math.max(1, decision.topology.slotsOf(id).length);
  const planned = batches.map((b) =>
    Object.freeze({ source: b.source, target: b.target, slots: formatSlotRanges(b.slots), slotCount: b.slots.length, estimatedRows: Math.round(rowsPerSlot(b.source) * b.slots.length) }),
  );
  const estimatedRows = planned.reduce((n, b) => n + b.estimatedRows, 0);
  const unshardedRows = decision.unsharded?.tables.reduce((n, t) => n + t.rows, 0);
  return Object.freeze({
    batches: planned,
    slots: planned.reduce((n, b) => n + b.slotCount, 0),
    estimatedRows,
    estimatedSeconds: estimateMoveSeconds(
      planned.map((b) => ({ rows: b.estimatedRows, sourceRows: shardRows.get(b.source) ?? 0, targetRows: shardRows.get(b.target) ?? 0 })),
      tuning,
      unshardedRows,
    ),
    ...(decision.removeShard === undefined ? {} : { removeShard: decision.removeShard }),
    ...(decision.unsharded === undefined ? {} : { unsharded: decision.unsharded }),
    ...(decision.migrationsPending === undefined ? {} : { migrationsPending: decision.migrationsPending }),
  });
}

async function tableRows(client: Client, tables: readonly ShardedTableSpec[], pace: ScanPace): Promise<number> {
  let total = 0;
  for (const t of tables) total += await estimateTableRows(client, t.name, pace);
  return total;
}
