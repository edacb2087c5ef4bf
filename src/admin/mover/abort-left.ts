/**
 * What an abort could not undo yet: the batches it took over whose shards did not all answer. The
 * mark is stored with the batch (in the move record's batches), so `resume` refuses the move, the
 * next `abort` finishes exactly what is left, and `status` and the abort's error name the shards.
 */
import type { MoveBatch, MoveRecord } from './move-record';
import type { AbortLeftover } from './mover-errors';
import { formatSlotRanges } from './slot-ranges';

/** A shard's role in a batch. */
export type BatchSide = 'source' | 'target';

/**
 * An abort's unfinished work on a batch. On an `aborted` batch: its rollback, the sides still to be
 * undone. On a `published` one: its clean-up on the source (the abort finishes a published batch).
 */
export interface AbortLeft {
  /** The batch's shards, by role, that still hold its state (undone once they answer). */
  readonly sides: readonly BatchSide[];
  /** Rolled back from its cutover: each side's switch (hidden slots, required version, fence) is undone with it. */
  readonly switched?: true;
}

declare module './move-record' {
  interface MoveBatch {
    /** Set by an abort that could not reach every shard of the batch: what is left ({@link AbortLeft}). */
    abortLeft?: AbortLeft;
  }
}

/** The shard of `batch` in `side`. */
export function shardOf(batch: MoveBatch, side: BatchSide): string {
  return side === 'source' ? batch.source : batch.target;
}

/** The shards that still hold state of `batch` after an abort (none when it has no {@link AbortLeft}). */
export function shardsLeft(batch: MoveBatch): string[] {
  return (batch.abortLeft?.sides ?? []).map((side) => shardOf(batch, side));
}

/** Whether an abort took the move over: a batch rolled back (or being rolled back), or left part-way by an abort, or the unsharded step rolled back. */
export function abortBegun(move: MoveRecord): boolean {
  return move.batches.some((b) => b.phase === 'aborted' || b.abortLeft !== undefined) || move.unsharded?.phase === 'aborted';
}

/** What the side of `batch` still holds, in words (for the abort's error). */
function holds(batch: MoveBatch, side: BatchSide): string {
  const slots = `slots ${formatSlotRanges(batch.slots)}`;
  if (batch.phase === 'published') return `the moved rows of ${slots} (hidden; the slots are published to "${batch.target}"), the move's fence and change capture there: the clean-up`;
  const switched = batch.abortLeft?.switched === true ? ` and the cutover's switch (version ${batch.version} required` : '';
  if (side === 'source') return `the change capture of ${slots} (trigger, change log, slot_move rows)${switched === '' ? '' : `${switched}, the slots hidden and fenced)`}`;
  return `copies of the rows of ${slots} (hidden)${switched === '' ? '' : `${switched}, the slots maybe shown)`}`;
}

/** Every piece of state the abort left, by batch and shard. */
export function leftovers(move: MoveRecord): AbortLeftover[] {
  return move.batches.flatMap((b) => (b.abortLeft?.sides ?? []).map((side) => ({ shard: shardOf(b, side), role: side, batch: b.index, slots: formatSlotRanges(b.slots), holds: holds(b, side) })));
}
