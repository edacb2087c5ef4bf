/**
 * Drives a stored move: each batch from the phase it reached to `cleaned` (so `resume` is just
 * running it again). Every phase saves the batch before the next starts. Rolling a move back is
 * `move-abort.ts`.
 */
import { createTopology } from '../../cluster/topology';
import type { MoveContext } from './move-context';
import type { BatchPhase, MoveBatch } from './move-record';
import { openBatchScope, enterPhase, type BatchScope } from './batch-scope';
import { copySlotRows, startCapture } from './batch-copy';
import { catchUp, cutover, cutoverState, finishCutover, revertCutover, versionState } from './batch-cutover';
import { cleanUp } from './batch-cleanup';
import { observeMove, observePhase } from './mover-telemetry';
import { isSuperseded, MoveFailedError, ShardSilentError } from './mover-errors';
import { isRecordChanged } from './move-store';
import { runUnshardedStep } from './unsharded-move';
import { abortBegun, shardsAwaited } from './abort-left';

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
  // A batch (or the unsharded step) is rolled back, or left marked, only by an abort: one found in
  // an open move is an abort that stopped part-way, maybe on shards that did not answer; resumed,
  // its batches would go on without the capture or copies the abort already removed, and a left
  // unsharded step would be published by the command the operator meant to abort it.
  if (abortBegun(ctx.move)) {
    const shards = shardsAwaited(ctx.move);
    const waiting = shards.length === 0 ? '' : ` once ${shards.map((s) => `"${s}"`).join(', ')} ${shards.length === 1 ? 'answers' : 'answer'} (${shards.length === 1 ? 'it still holds' : 'they still hold'} state of the move)`;
    const what = ctx.move.unsharded?.abortLeft !== undefined ? 'its unsharded step is left for shards that did not answer' : 'some of its batches are rolled back';
    throw new MoveFailedError(`An abort of move ${ctx.move.id} stopped part-way (${what}): it cannot be resumed; run abort again to finish rolling it back${waiting}.`, {
      moveId: ctx.move.id,
      reason: 'abort-unfinished',
      ...(shards.length === 0 ? {} : { shards }),
    });
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
        await backOutOfCutover(scope, error).catch((backOutError: unknown) => {
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
async function backOutOfCutover(scope: BatchScope, cause: unknown): Promise<void> {
  if (scope.batch.publishPending !== undefined) return;
  const { ctx } = scope;
  // Sessions handed out anew (a copy stopped under the fence by a lost lock dropped its source's
  // session, and a lock taken again raises its own epoch on each shard: review 80, M1), unless a
  // shard was just found silent: a new session would wait for its login's deadline first, where
  // the dropped one fails at once (the back-out is then left to resume or abort).
  const fresh = (): Promise<BatchScope> => (cause instanceof ShardSilentError ? Promise.resolve(scope) : openBatchScope(ctx, scope.batch));
  if (ctx.lost.aborted) {
    // The lock taken again is a new command's: the back-out's changes carry its epoch.
    return ctx.catalog.withOperatorLock((_lost, confirm, epoch) => {
      ctx.renewEpoch(epoch);
      return backOut(scope, fresh, confirm);
    });
  }
  return backOut(scope, fresh, ctx.confirmLock);
}

async function backOut(failed: BatchScope, fresh: () => Promise<BatchScope>, confirmLock: () => Promise<void>): Promise<void> {
  await failed.ctx.store.claim(failed.ctx.move);
  const scope = await fresh();
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
