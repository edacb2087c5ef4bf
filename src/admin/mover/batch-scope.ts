/** The pieces every phase of a batch works with: its two shards' sessions, its tables and its slots as bits. */
import type { Client } from 'pg';
import type { Topology } from '../../cluster/topology';
import type { MoveContext } from './move-context';
import type { MoveBatch } from './move-record';
import { slotBitsLiteral } from './shard-guard-sql';
import { resolveKeyTypes, type KeyedTable } from './table-keys';
import { slotSet, type SlotSet } from './slot-lines';
import type { ScanPace } from './scan-pacer';

/** One batch's working set. */
export interface BatchScope {
  readonly ctx: MoveContext;
  readonly batch: MoveBatch;
  readonly topology: Topology;
  readonly source: Client;
  readonly target: Client;
  readonly tables: readonly KeyedTable[];
  /** The batch's slots as a varbit literal. */
  readonly bits: string;
  /** The batch's slots, for scans that pick rows by slot in the mover. */
  readonly slots: SlotSet;
  readonly slotCount: number;
  /** How the batch's scans, copies and deletes yield to the app (probing its two shards). */
  readonly pace: ScanPace;
}

/** Opens (or reuses) the sessions of a batch and resolves its tables' key types on the source. */
export async function openBatchScope(ctx: MoveContext, batch: MoveBatch): Promise<BatchScope> {
  const topology = await ctx.topology();
  const [source, target] = await Promise.all([ctx.session(batch.source, topology), ctx.session(batch.target, topology)]);
  const tables = await resolveKeyTypes(source, ctx.move.tables, batch.source);
  return { ctx, batch, topology, source, target, tables, bits: slotBitsLiteral(batch.slots, topology.slotCount), slots: slotSet(batch.slots, topology.slotCount), pace: ctx.pace([batch.source, batch.target], topology), slotCount: topology.slotCount };
}

/** Saves the batch at `phase` (in the catalog) and reports it. */
export async function enterPhase(scope: BatchScope, phase: MoveBatch['phase']): Promise<void> {
  scope.batch.phase = phase;
  await scope.ctx.store.save(scope.ctx.move);
  report(scope);
}

/** Reports the batch's progress. */
export function report(scope: BatchScope, lag?: number, rowsCleaned?: number): void {
  const { ctx, batch } = scope;
  ctx.report({
    moveId: ctx.move.id,
    batch: batch.index + 1,
    batches: ctx.move.batches.length,
    source: batch.source,
    target: batch.target,
    phase: batch.phase,
    rowsCopied: batch.rowsCopied ?? 0,
    rowsTotal: batch.rowsTotal ?? 0,
    ...(lag === undefined ? {} : { lag }),
    ...(rowsCleaned === undefined ? {} : { rowsCleaned }),
  });
}
