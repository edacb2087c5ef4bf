/**
 * Aborting a move: every batch not published is rolled back, every published one finished, on the
 * shards that answer. A shard that does not answer (stopped, frozen, cut off: `abort-reach.ts`) is
 * left out, its part kept in the batch's {@link AbortLeft}, and the move stays open with what is
 * left ({@link AbortOutcome.left}); `abort` again finishes it once the shard answers (each step is
 * idempotent), and `resume` refuses the move meanwhile. A rollback has a step per shard, so the
 * source takes writes again at once however its target fares, and the target's copies go however
 * its source fares.
 *
 * A `cutover` is settled before anything is rolled back. With both shards answering it is settled
 * as before ({@link cutoverState}: published → finished; a publish that may have been sent is sent
 * again and the batch finished; otherwise rolled back). With one of them silent, the catalog alone
 * settles it ({@link settleByCatalog}).
 *
 * Nothing is undone on a shard around state of the move left unsettled: a published batch is
 * cleaned up (its source's rows deleted) only once its target answers, and a drain's unsharded
 * step left because one of its shards is silent is marked on the move and its shards keep their
 * required versions (the source may be switched to the step's version, which `abort` or the
 * step's pending publish may still publish).
 */
import type { MoveContext } from './move-context';
import type { AbortLeft, BatchSide, MoveBatch } from './move-record';
import { bothSides, enterPhase, partialBatchScope, report, sourceSide, targetSide, type PartialBatchScope } from './batch-scope';
import { cutoverState, finishCutover, revertSource, revertTarget, versionState } from './batch-cutover';
import { cleanUp, clearTarget, releaseSource } from './batch-cleanup';
import { lowerRequiredVersion } from './guard-state';
import { abortUnshardedStep } from './unsharded-move';
import { ShardReach } from './abort-reach';
import { leftovers, shardOf, stepShards } from './abort-left';
import type { AbortLeftover } from './mover-errors';

/** What an abort did, and what it left for the next one. */
export interface AbortOutcome {
  /** Batches this run finished rolling back. */
  readonly rolledBack: number;
  /** Batches already published, finished (cleaned up) by this run or before. */
  readonly completed: number;
  /** What shards that did not answer still hold (empty: the move is aborted). */
  readonly left: readonly AbortLeftover[];
  /** Each shard found unreachable, and why. */
  readonly unreachable: ReadonlyMap<string, string>;
  /** A drain's unsharded step left as it was because one of its shards did not answer. */
  readonly unsharded?: { readonly phase: string; readonly shards: readonly string[] };
}

/** One abort run: the move's context and the shards it found unreachable. */
interface AbortRun {
  readonly ctx: MoveContext;
  readonly reach: ShardReach;
}

/**
 * Rolls back every batch that was not published and finishes (cleans up) those that were, on the
 * shards that answer. Every `cutover` is settled before any batch is rolled back: one whose
 * publish is still unsettled (this command's own publish of it unanswered) stops the abort with
 * nothing else changed (the move stays open and can be resumed or aborted again), so no later
 * batch is rolled back around a version that may commit. Marks the move `aborted` once nothing is
 * left; otherwise it stays open and {@link AbortOutcome.left} says what waits for which shard.
 */
export async function abortMoveBatches(ctx: MoveContext): Promise<AbortOutcome> {
  const run: AbortRun = { ctx, reach: new ShardReach(ctx) };
  const { move } = ctx;
  // Every shard of the move asked at once: one that does not answer costs its deadline once.
  await run.reach.ask(shardsOf(ctx), await ctx.topology());
  for (const batch of move.batches) {
    if (batch.phase === 'cutover') await settleCutover(run, batch);
  }
  let rolledBack = 0;
  let completed = 0;
  // The unsharded step runs after the batches: undone (or finished) first.
  const unsharded = await abortUnsharded(run);
  if (unsharded === 'rolled-back') rolledBack++;
  if (unsharded === 'completed') completed++;
  for (const batch of [...move.batches].reverse()) {
    if (batch.phase === 'cleaned') {
      delete batch.abortLeft; // cleaned after the mark, before its removal was saved
      completed++;
    } else if (batch.phase === 'published') {
      if (await finishPublished(run, batch)) completed++;
    } else if (neverStarted(move.batches, batch)) {
      batch.phase = 'aborted'; // nothing of it is on a shard
      rolledBack++;
    } else if (batch.phase !== 'aborted' || batch.abortLeft !== undefined) {
      if (batch.phase !== 'aborted') await markRollback(ctx, batch);
      if (await rollBack(run, batch)) rolledBack++;
    }
  }
  await lowerUnpublishedRequirements(run);
  const left = leftovers(move);
  const unshardedLeft = typeof unsharded === 'object' ? unsharded : undefined;
  if (left.length === 0 && unshardedLeft === undefined) move.status = 'aborted';
  await ctx.store.save(move);
  return { rolledBack, completed, left, unreachable: run.reach.down, ...(unshardedLeft === undefined ? {} : { unsharded: unshardedLeft }) };
}

/** Every shard of the move: its batches' and its unsharded step's. */
function shardsOf(ctx: MoveContext): Set<string> {
  const ids = new Set(ctx.move.batches.flatMap((b) => [b.source, b.target]));
  if (ctx.move.unsharded !== undefined) for (const id of stepShards(ctx.move.unsharded)) ids.add(id);
  return ids;
}

/**
 * Whether `batch` is `planned` behind a batch not cleaned: the mover runs the batches in order,
 * each to `cleaned` before the next starts, so it never started and holds nothing on any shard
 * (the first batch not cleaned may be `planned` with its capture half installed: not this one).
 */
function neverStarted(batches: readonly MoveBatch[], batch: MoveBatch): boolean {
  return batch.phase === 'planned' && batches.slice(0, batches.indexOf(batch)).some((b) => b.phase !== 'cleaned');
}

/** The batch's working set with the sessions of its shards that answer (undefined when neither does). */
async function scopeOf(run: AbortRun, batch: MoveBatch): Promise<PartialBatchScope | undefined> {
  const topology = await run.ctx.topology();
  const source = await run.reach.session(batch.source, topology);
  const target = await run.reach.session(batch.target, topology);
  for (;;) {
    const from = source !== undefined && !run.reach.isDown(batch.source) ? 'source' : target !== undefined && !run.reach.isDown(batch.target) ? 'target' : undefined;
    if (from === undefined) return undefined;
    let scope: PartialBatchScope | undefined;
    // Key types are read on the first that answers; one that stops answering meanwhile is left out.
    const read = await run.reach.attempt([shardOf(batch, from)], topology, async () => {
      scope = await partialBatchScope(run.ctx, batch, topology, run.reach.isDown(batch.source) ? undefined : source, run.reach.isDown(batch.target) ? undefined : target);
    });
    if (read) return scope;
  }
}

/**
 * A `cutover` found by the abort, settled. Both shards answering: by {@link cutoverState}
 * (published → `published`, finished below; a publish that may have been sent (the target shows
 * the slots, or one is recorded pending) is sent again as that version and the batch finished, or
 * rolled back if the version went to another change; otherwise rolled back). A shard that does not
 * answer, from the start or meanwhile: {@link settleByCatalog}. This command's own publish left
 * unanswered is thrown (`outcomeUnknown`): the abort stops there.
 */
async function settleCutover(run: AbortRun, batch: MoveBatch): Promise<void> {
  const partial = await scopeOf(run, batch);
  const scope = partial === undefined ? undefined : bothSides(partial);
  if (scope !== undefined) {
    const settled = await run.reach.attempt([batch.source, batch.target], scope.topology, async () => {
      const state = await cutoverState(scope);
      if (state === 'published') return enterPhase(scope, 'published');
      if (state !== 'outstanding') return markRollback(run.ctx, batch);
      await finishCutover(scope).catch(async (error: unknown) => {
        // Still unsettled (or published after all): thrown; another version holds it: roll back.
        if (batch.publishPending !== undefined || batch.phase !== 'cutover') throw error;
        await markRollback(run.ctx, batch);
      });
    });
    if (settled) return;
  }
  if (batch.phase === 'cutover') await settleByCatalog(run.ctx, batch);
}

/**
 * A `cutover` whose shards do not all answer, settled by the catalog alone. The abort claimed the
 * move before it read anything, and every publish of a mover commits only while no other command
 * has saved the move since that mover's last save (`MoveStore.publishPrecondition`, checked in the
 * publish's transaction with the move's row locked for share): once the claim returned, a publish
 * of an earlier command that is not in the catalog never will be, whether it was sent or not, held
 * on the wire, recorded pending or not. So the catalog read now is final: the version published →
 * the batch is finished (clean-up on the source); otherwise nobody will publish it (this abort
 * does not: its own publish left unanswered never gets here) and the batch is rolled back, its
 * switch undone on each shard that answers, the rest once they answer. The target's state does
 * not matter then: the version it may require is never published, so no router reads there at it.
 */
async function settleByCatalog(ctx: MoveContext, batch: MoveBatch): Promise<void> {
  const scope = { ctx, batch };
  if (batch.version !== undefined && (await versionState(scope)) === 'published') {
    delete batch.publishPending;
    return enterPhase(scope, 'published');
  }
  await ctx.confirmLock(); // no other command can act on the move until the mark is saved
  await markRollback(ctx, batch);
}

/**
 * Marks `batch` rolled back by this abort, every side still to undo (saved before any is undone):
 * `resume` refuses the move from now on. A batch in `cutover` has its switch undone too.
 */
async function markRollback(ctx: MoveContext, batch: MoveBatch): Promise<void> {
  const switched = batch.phase === 'cutover' && batch.version !== undefined && batch.prevRequired !== undefined;
  batch.phase = 'aborted';
  batch.abortLeft = { sides: ['source', 'target'], ...(switched ? { switched: true as const } : {}) };
  delete batch.publishPending;
  await ctx.store.save(ctx.move);
}

/**
 * Undoes what is left of `batch`'s rollback on the shards that answer; true once nothing is left.
 * A switched batch: the target's switch first (so the two never both show the slots), then the
 * source (its switch undone and its capture and fence released: writes flow again), then the
 * target's copies deleted. A target found silent at its switch is not asked again by this run.
 */
async function rollBack(run: AbortRun, batch: MoveBatch): Promise<boolean> {
  const left = batch.abortLeft!;
  const scope = await scopeOf(run, batch);
  const sides = new Set<BatchSide>(left.sides);
  const switched = left.switched === true;
  const target = scope === undefined ? undefined : targetSide(scope);
  const source = scope === undefined ? undefined : sourceSide(scope);
  if (scope !== undefined) {
    // The target's switch undone first (once: clearTarget below only deletes and shows).
    if (switched && sides.has('target') && target !== undefined) await run.reach.attempt([batch.target], scope.topology, () => revertTarget(target));
    if (sides.has('source') && source !== undefined && !run.reach.isDown(batch.source)) {
      const undone = await run.reach.attempt([batch.source], scope.topology, async () => {
        if (switched) await revertSource(source);
        await releaseSource(source);
      });
      if (undone) sides.delete('source');
    }
    if (sides.has('target') && target !== undefined && !run.reach.isDown(batch.target)) {
      const undone = await run.reach.attempt([batch.target], scope.topology, () => clearTarget(target));
      if (undone) sides.delete('target');
    }
  }
  const rest: AbortLeft = { ...left, sides: left.sides.filter((s) => sides.has(s)) };
  if (rest.sides.length === 0) delete batch.abortLeft;
  else batch.abortLeft = rest;
  await run.ctx.store.save(run.ctx.move);
  if (scope !== undefined) report(scope);
  return rest.sides.length === 0;
}

/**
 * A published batch's clean-up on its source; true once cleaned. Left (marked with the shards it
 * waits for) while the source or the target does not answer: the clean-up deletes the source's
 * rows, which may be the only copy left if the target, their new owner, is lost for good.
 */
async function finishPublished(run: AbortRun, batch: MoveBatch): Promise<boolean> {
  const silent = (): BatchSide[] => (['source', 'target'] as const).filter((side) => run.reach.isDown(shardOf(batch, side)));
  // Both asked up front; scopeOf may find one silent meanwhile (then it is not cleaned either).
  const scope = silent().length > 0 ? undefined : await scopeOf(run, batch);
  const source = scope === undefined || silent().length > 0 ? undefined : sourceSide(scope);
  if (source !== undefined && (await run.reach.attempt([batch.source], source.topology, () => cleanUp(source)))) {
    delete batch.abortLeft; // saved with the move at the abort's end
    return true;
  }
  const sides = silent();
  batch.abortLeft = { sides: sides.length === 0 ? ['source'] : sides };
  await run.ctx.store.save(run.ctx.move);
  return false;
}

/**
 * A drain's unsharded step, undone or finished (`unsharded-move.ts`) when both its shards answer.
 * One still `planned` while a batch is not cleaned was never started (it runs once every batch is
 * cleaned): nothing of it is on a shard, so it is marked aborted without them; one `cleaned` needs
 * nothing more. Otherwise, with one of its shards silent, it is left as it is, marked on the move
 * (`UnshardedStep.abortLeft`: `resume` refuses the move, its shards' required versions are
 * kept) and named in the outcome.
 */
async function abortUnsharded(run: AbortRun): Promise<'rolled-back' | 'completed' | 'none' | { phase: string; shards: string[] }> {
  const { ctx, reach } = run;
  const step = ctx.move.unsharded;
  if (step === undefined) return 'none';
  const shards = stepShards(step);
  const settled = (outcome: 'rolled-back' | 'completed' | 'none'): typeof outcome => {
    delete step.abortLeft; // saved with the move at the abort's end
    return outcome;
  };
  if (step.phase === 'aborted') return settled('none');
  if (step.phase === 'cleaned') return settled('completed');
  if (!shards.some((id) => reach.isDown(id))) {
    let outcome: 'rolled-back' | 'completed' | 'none' = 'none';
    if (await reach.attempt(shards, await ctx.topology(), async () => void (outcome = await abortUnshardedStep(ctx, step)))) return settled(outcome);
  } else if (step.phase === 'planned' && ctx.move.batches.some((b) => b.phase !== 'cleaned')) {
    step.phase = 'aborted';
    await ctx.store.save(ctx.move);
    return settled('none');
  }
  const silent = shards.filter((id) => reach.isDown(id));
  step.abortLeft = { shards: silent };
  await ctx.store.save(ctx.move);
  return { phase: step.phase, shards: silent };
}

/**
 * Once an abort settled everything, no shard of the move may require a version newer than the
 * catalog's latest: no router could ever satisfy it, and the whole shard would refuse every app
 * statement (KS001). A mover that lost its operator lock and went on while this abort ran could
 * leave one so (its target switch landing after the abort's revert); it is put back to the latest.
 * A shard that does not answer is left out: one holding state of the move is named in the outcome
 * and put back by the next abort; one holding none was raised by no batch this abort undid. So is
 * every shard holding state of the move this abort left unsettled: a left unsharded step's source
 * may require the step's version, which is still to be published (its publish pending, or the next
 * abort finishing it): lowered, it would take a stale router's writes (review 81, H1).
 */
async function lowerUnpublishedRequirements(run: AbortRun): Promise<void> {
  const { ctx, reach } = run;
  const latest = await ctx.topology();
  const step = ctx.move.unsharded;
  const unsettled = new Set([...leftovers(ctx.move).map((l) => l.shard), ...(step?.abortLeft === undefined ? [] : stepShards(step))]);
  for (const id of shardsOf(ctx)) {
    if (latest.shardById(id) === undefined || unsettled.has(id)) continue;
    const client = await reach.session(id, latest);
    if (client !== undefined) await reach.attempt([id], latest, () => lowerRequiredVersion(client, latest.version));
  }
}
