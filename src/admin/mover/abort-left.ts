/**
 * What an abort could not finish yet: the batches it took over whose shards did not all answer,
 * and a drain's unsharded step it left as it was. The marks are stored with the move record
 * ({@link MoveBatch.abortLeft}, {@link UnshardedStep.abortLeft}), so `resume` refuses the move, the
 * next `abort` finishes exactly what is left, and `status` and the abort's error name the shards.
 */
import type { BatchSide, MoveBatch, MoveRecord, UnshardedStep } from './move-record';
import type { AbortLeftover } from './mover-errors';
import { formatSlotRanges } from './slot-ranges';

/** The shard of `batch` in `side`. */
export function shardOf(batch: MoveBatch, side: BatchSide): string {
  return side === 'source' ? batch.source : batch.target;
}

/** The shards an abort waits for to finish `batch` (none when it has no {@link MoveBatch.abortLeft}). */
export function shardsLeft(batch: MoveBatch): string[] {
  return (batch.abortLeft?.sides ?? []).map((side) => shardOf(batch, side));
}

/** The shards an abort waits for to finish the move: its batches' and its unsharded step's. */
export function shardsAwaited(move: MoveRecord): string[] {
  return [...new Set([...move.batches.flatMap(shardsLeft), ...(move.unsharded?.abortLeft?.shards ?? [])])];
}

/** The shards of `step` that hold its state (the source's fence and switch, the target's copies). */
export function stepShards(step: UnshardedStep): string[] {
  return [step.source, step.target];
}

/**
 * Whether an abort took the move over: a batch rolled back (or being rolled back), or left part-way
 * by an abort, or the unsharded step rolled back or left by an abort.
 */
export function abortBegun(move: MoveRecord): boolean {
  const step = move.unsharded;
  return move.batches.some((b) => b.phase === 'aborted' || b.abortLeft !== undefined) || step?.phase === 'aborted' || step?.abortLeft !== undefined;
}

/** What the side of `batch` still holds, in words (for the abort's error). */
function holds(batch: MoveBatch, side: BatchSide): string {
  const slots = `slots ${formatSlotRanges(batch.slots)}`;
  if (batch.phase === 'published') {
    if (side === 'source') return `the moved rows of ${slots} (hidden; the slots are published to "${batch.target}"), the move's fence and change capture there: the clean-up`;
    return `the rows of ${slots} as published (their new owner): the clean-up of "${batch.source}" waits for it, as the rows there may be the only copy left if it is lost`;
  }
  const switched = batch.abortLeft?.switched === true ? ` and the cutover's switch (version ${batch.version} required` : '';
  if (side === 'source') return `the change capture of ${slots} (trigger, change log, slot_move rows)${switched === '' ? '' : `${switched}, the slots hidden and fenced)`}`;
  return `copies of the rows of ${slots} (hidden)${switched === '' ? '' : `${switched}, the slots maybe shown)`}`;
}

/** Every piece of state the abort left on a batch, by batch and shard. */
export function leftovers(move: MoveRecord): AbortLeftover[] {
  return move.batches.flatMap((b) => (b.abortLeft?.sides ?? []).map((side) => ({ shard: shardOf(b, side), role: side, batch: b.index, slots: formatSlotRanges(b.slots), holds: holds(b, side) })));
}
