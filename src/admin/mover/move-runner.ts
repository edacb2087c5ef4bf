/**
 * Drives a stored move: each batch from the phase it reached to `cleaned` (so `resume` is just
 * running it again), or back to `aborted`. Every phase saves the batch before the next starts.
 */
import { createTopology } from '../../cluster/topology';
import type { MoveContext } from './move-context';
import type { BatchPhase, MoveBatch } from './move-record';
import { openBatchScope, enterPhase, type BatchScope } from './batch-scope';
import { copySlotRows, startCapture } from './batch-copy';
import { catchUp, cutover, cutoverState, finishCutover, revertCutover, versionState } from './batch-cutover';
import { abortBatch, cleanUp } from './batch-cleanup';
import { observeMove, observePhase } from './mover-telemetry';
import { isSuperseded, MoveFailedError } from './mover-errors';
import { isRecordChanged } from './move-store';
import { lowerRequiredVersion } from './guard-state';
import { abortUnshardedStep, runUnshardedStep } from './unsharded-move';

type PhaseStep = (scope: BatchScope, entered: BatchPhase) => Promise<void>;

// One handler per phase: a new phase without one fails to compile.
const STEPS: Record<BatchPhase, PhaseStep | null> = {
  planned: (scope) => startCapture(scope),
  capturing: (scope, entered) => copySlotRows(scope, entered === 'capturing'),
  copied: (scope) => catchUp(scope),
  'caught-up': (scope) => cutover(scope),
  cutover: (scope) => resumeCutover(scope),
  published: (scope) => cleanUp(scope),
  cleaned: null,
  aborted: null,
};

/** Runs every unfinished batch to `cleaned`, then (for a drain) removes the drained shard; marks the move done. */
export async function runMove(ctx: MoveContext): Promise<void> {
  return observeMove(ctx.move, () => runBatches(ctx));
}

async function runBatches(ctx: MoveContext): Promise<void> {
  // A batch is rolled back only by an abort: one found in an open move is an abort that stopped part-way.
  if (ctx.move.batches.some((b) => b.phase === 'aborted') || ctx.move.unsharded?.phase === 'aborted') {
    throw new MoveFailedError(`An abort of move ${ctx.move.id} stopped part-way (some of its batches are rolled back): it cannot be resumed; run abort again to finish rolling it back.`, { moveId: ctx.move.id, reason: 'abort-unfinished' });
  }
  for (const batch of ctx.move.batches) {
    if (batch.phase === 'cleaned' || batch.phase === 'aborted') continue;
    await runBatch(ctx, batch);
  }
  // A drain of the shard holding the unsharded tables moves them once its slots are gone.
  if (ctx.move.unsharded !== undefined) await runUnshardedStep(ctx, ctx.move.unsharded);
  if (ctx.move.removeShard !== undefined) await removeShard(ctx, ctx.move.removeShard);
  ctx.move.status = 'done';
  ctx.move.error = null;
  await ctx.store.save(ctx.move);
}

async function runBatch(ctx: MoveContext, batch: MoveBatch): Promise<void> {
  const scope = await openBatchScope(ctx, batch);
  const entered = batch.phase;
  for (;;) {
    const step = STEPS[batch.phase];
    if (step === null) return;
    ctx.checkLock();
    await ctx.hook?.(batch, batch.phase);
    try {
      await observePhase(ctx.move, batch, () => step(scope, entered));
    } catch (error) {
      // A move another command took over (its save, or a shard's newer epoch, says so) is theirs to settle: nothing more is done to its shards here.
      if (batch.phase === 'cutover' && !isRecordChanged(error) && !isSuperseded(error)) {
        await backOutOfCutover(scope).catch((backOutError: unknown) => {
          // A back-out a shard refused for a newer command's epoch: that command owns the move now, say so.
          if (isSuperseded(backOutError)) throw backOutError;
        });
      }
      throw error;
    }
  }
}

/**
 * A cutover interrupted in this process: put the shards back so routers of the current version
 * work, unless it was published, or a publish of its version may still commit (its outcome
 * unknown: then everything stays as it is, the source switched and the target showing, and
 * `resume` or `abort` settles the version first). A catalog that cannot be read leaves it as it is too.
 *
 * Only while no other command acts on the move: it is claimed first (a command that took it over
 * since has saved it: then it is theirs), and the lock is confirmed held after the claim (a
 * command that could take the move over needs the lock first); with the operator lock lost it is
 * taken again around the back-out (held by another operator: left as it is for them to settle).
 * Before, a mover that noticed its lock gone still reverted, and its revert could undo a resume's
 * switch (review 61, M1).
 */
async function backOutOfCutover(scope: BatchScope): Promise<void> {
  if (scope.batch.publishPending !== undefined) return;
  const { ctx } = scope;
  if (ctx.lost.aborted) {
    // The lock taken again is a new command's: the back-out's changes carry its epoch.
    return ctx.catalog.withOperatorLock((_lost, confirm, epoch) => {
      ctx.renewEpoch(epoch);
      return backOut(scope, confirm);
    });
  }
  return backOut(scope, ctx.confirmLock);
}

async function backOut(scope: BatchScope, confirmLock: () => Promise<void>): Promise<void> {
  await scope.ctx.store.claim(scope.ctx.move);
  const state = await versionState(scope);
  if (state === 'published') {
    await enterPhase(scope, 'published');
    return;
  }
  await confirmLock();
  await scope.ctx.hook?.(scope.batch, 'reverting');
  await revertCutover(scope);
  scope.batch.phase = 'copied'; // writes go through again: catch up and verify before the next fence
  await scope.ctx.store.save(scope.ctx.move);
}

/**
 * A `cutover` found on resume, settled by its version ({@link cutoverState}): published (clean
 * up); not published and never to be, or never switched (revert, catch up again); switched, or a
 * publish outstanding (finish it: publish the same topology as that version again).
 */
async function resumeCutover(scope: BatchScope): Promise<void> {
  const state = await cutoverState(scope);
  if (state === 'published') return enterPhase(scope, 'published');
  if (state === 'switched' || state === 'outstanding') {
    await finishCutover(scope);
    return;
  }
  await revertCutover(scope);
  await enterPhase(scope, 'copied'); // catch up again: writes may have gone through since the fence expired
}

/**
 * Rolls back every batch that was not published; finishes (cleans up) those that were. Returns how
 * many of each. Every `cutover` is settled before any batch is rolled back: one whose publish is
 * still unsettled stops the abort with nothing else changed (the move stays open and can be
 * resumed or aborted again), so no later batch is rolled back around a version that may commit.
 */
export async function abortMoveBatches(ctx: MoveContext): Promise<{ rolledBack: number; completed: number }> {
  for (const batch of ctx.move.batches) {
    if (batch.phase === 'cutover') await settleCutoverForAbort(await openBatchScope(ctx, batch));
  }
  let rolledBack = 0;
  let completed = 0;
  // The unsharded step runs after the batches: undone (or finished) first.
  if (ctx.move.unsharded !== undefined) {
    const outcome = await abortUnshardedStep(ctx, ctx.move.unsharded);
    if (outcome === 'rolled-back') rolledBack++;
    if (outcome === 'completed') completed++;
  }
  for (const batch of [...ctx.move.batches].reverse()) {
    if (batch.phase === 'aborted') continue;
    if (batch.phase === 'cleaned') {
      completed++;
      continue;
    }
    const scope = await openBatchScope(ctx, batch);
    if (batch.phase === 'cutover') await settleCutoverForAbort(scope);
    if (batch.phase === 'published') {
      await cleanUp(scope);
      completed++;
    } else {
      await abortBatch(scope);
      rolledBack++;
    }
  }
  await lowerUnpublishedRequirements(ctx);
  ctx.move.status = 'aborted';
  await ctx.store.save(ctx.move);
  return { rolledBack, completed };
}

/**
 * Once an abort settled everything, no shard of the move may require a version newer than the
 * catalog's latest: no router could ever satisfy it, and the whole shard would refuse every app
 * statement (KS001). A mover that lost its operator lock and went on while this abort ran could
 * leave one so (its target switch landing after the abort's revert); it is put back to the latest.
 */
async function lowerUnpublishedRequirements(ctx: MoveContext): Promise<void> {
  const latest = await ctx.topology();
  const ids = new Set(ctx.move.batches.flatMap((b) => [b.source, b.target]));
  if (ctx.move.unsharded !== undefined) for (const id of [ctx.move.unsharded.source, ctx.move.unsharded.target]) ids.add(id);
  for (const id of ids) {
    if (latest.shardById(id) === undefined) continue;
    await lowerRequiredVersion(await ctx.session(id, latest), latest.version);
  }
}

/**
 * A `cutover` found by an abort, settled ({@link cutoverState}): published → `published` (the
 * abort finishes it); a publish that may still commit is finished (published again), never rolled
 * back under it; otherwise reverted (shards back as before, the batch `copied`, rolled back next).
 */
async function settleCutoverForAbort(scope: BatchScope): Promise<void> {
  const { batch } = scope;
  const state = await cutoverState(scope);
  if (state === 'published') await enterPhase(scope, 'published');
  else if (state === 'outstanding') {
    await finishCutover(scope).catch(async (error: unknown) => {
      // Still unsettled (or published after all): the abort stops here; another version holds it: roll back.
      if (batch.publishPending !== undefined || batch.phase !== 'cutover') throw error;
      await revertCutover(scope);
      await enterPhase(scope, 'copied');
    });
  } else {
    await revertCutover(scope);
    await enterPhase(scope, 'copied'); // as a cutover backed out of: resumed, it catches up again
  }
}

/** Publishes the topology without `shardId` once it owns no slot. */
async function removeShard(ctx: MoveContext, shardId: string): Promise<void> {
  const latest = await ctx.topology();
  if (latest.shardById(shardId) === undefined) return;
  if (latest.slotsOf(shardId).length > 0) return;
  if (latest.unshardedShardId === shardId) {
    throw new MoveFailedError(`Shard "${shardId}" still holds the unsharded tables (topology version ${latest.version}); it stays in the topology.`, { moveId: ctx.move.id, shardId });
  }
  const owners = latest.ownerIds();
  const next = createTopology({
    version: latest.version + 1,
    slotCount: latest.slotCount,
    shards: latest.shards.filter((s) => s.id !== shardId).map((s) => ({ id: s.id, primary: s.primary.url, replicas: s.replicas.map((r) => r.url) })),
    owners,
    ...(latest.unshardedShardId === undefined ? {} : { unshardedShardId: latest.unshardedShardId }),
  });
  ctx.checkLock();
  await ctx.catalog.publish(next, `move ${ctx.move.id}: shard ${shardId} drained and removed`, ctx.store.publishPrecondition(ctx.move));
}
