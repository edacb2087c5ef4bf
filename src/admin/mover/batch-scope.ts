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

/** What a step on the batch's source alone works with (an abort's, while the target does not answer). */
export type SourceScope = Omit<BatchScope, 'target'>;

/** What a step on the batch's target alone works with (an abort's, while the source does not answer). */
export type TargetScope = Omit<BatchScope, 'source'>;

/** A batch's working set with the sessions of the shards that answer (an abort's): an unreachable shard's is undefined. */
export interface PartialBatchScope extends Omit<BatchScope, 'source' | 'target'> {
  readonly source: Client | undefined;
  readonly target: Client | undefined;
}

/** Opens (or reuses) the sessions of a batch and resolves its tables' key types on the source. */
export async function openBatchScope(ctx: MoveContext, batch: MoveBatch): Promise<BatchScope> {
  const topology = await ctx.topology();
  const [source, target] = await Promise.all([ctx.session(batch.source, topology), ctx.session(batch.target, topology)]);
  return { ...(await scopeParts(ctx, batch, topology, { client: source, shard: batch.source }, [batch.source, batch.target])), source, target };
}

/**
 * The working set of a batch from the sessions given (none for a shard that does not answer): key
 * types resolved on the source, or on the target when only it answers (the move checked their
 * schemas equal); paced by the shards given only. Undefined when neither is given.
 */
export async function partialBatchScope(ctx: MoveContext, batch: MoveBatch, topology: Topology, source: Client | undefined, target: Client | undefined): Promise<PartialBatchScope | undefined> {
  const keys = source !== undefined ? { client: source, shard: batch.source } : target !== undefined ? { client: target, shard: batch.target } : undefined;
  if (keys === undefined) return undefined;
  const paced = [...(source === undefined ? [] : [batch.source]), ...(target === undefined ? [] : [batch.target])];
  return { ...(await scopeParts(ctx, batch, topology, keys, paced)), source, target };
}

async function scopeParts(ctx: MoveContext, batch: MoveBatch, topology: Topology, keys: { client: Client; shard: string }, paced: readonly string[]): Promise<Omit<BatchScope, 'source' | 'target'>> {
  const tables = await resolveKeyTypes(keys.client, ctx.move.tables, keys.shard);
  return { ctx, batch, topology, tables, bits: slotBitsLiteral(batch.slots, topology.slotCount), slots: slotSet(batch.slots, topology.slotCount), pace: ctx.pace(paced, topology), slotCount: topology.slotCount };
}

/** The source's side of a partial scope, when the source answers. */
export function sourceSide(scope: PartialBatchScope): SourceScope | undefined {
  return scope.source === undefined ? undefined : { ...scope, source: scope.source };
}

/** The target's side of a partial scope, when the target answers. */
export function targetSide(scope: PartialBatchScope): TargetScope | undefined {
  return scope.target === undefined ? undefined : { ...scope, target: scope.target };
}

/** The whole scope, when both shards answer. */
export function bothSides(scope: PartialBatchScope): BatchScope | undefined {
  return scope.source === undefined || scope.target === undefined ? undefined : { ...scope, source: scope.source, target: scope.target };
}

/** Saves the batch at `phase` (in the catalog) and reports it. */
export async function enterPhase(scope: Pick<BatchScope, 'ctx' | 'batch'>, phase: MoveBatch['phase']): Promise<void> {
  scope.batch.phase = phase;
  await scope.ctx.store.save(scope.ctx.move);
  report(scope);
}

/** Reports the batch's progress. */
export function report(scope: Pick<BatchScope, 'ctx' | 'batch'>, lag?: number, rowsCleaned?: number): void {
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
