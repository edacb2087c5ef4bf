/**
 * A drain's unsharded step: the tables that are not sharded leave the shard holding them, after
 * its slot batches (so no sharded row there refers to them any more). Small reference tables by
 * design, so they move under a brief write fence instead of with change capture:
 *
 * 1. `planned → guarded`: the source's unsharded tables get the write gate and the version policy
 *    ({@link unshardedTableGuardSql}).
 * 2. `guarded → fenced → copied`: the new version is fixed and saved, the fence goes up (writes
 *    refused with KS002 naming that version; it lifts itself after `fenceTimeoutMillis`), the mover
 *    waits for transactions older than the fence, copies every table in one target transaction
 *    (COPY out, COPY in; the target's rows of them deleted first, so a repeated copy is whole; its
 *    foreign keys and triggers do not fire: {@link copyTables}), compares counts and checksums, and
 *    moves the target's sequences up to the source's. A failed copy lowers the fence at once.
 * 3. `copied → published`: the source switches in one statement (the fence becomes permanent only
 *    if it still holds, and the source requires the new version, so stale routers' reads are
 *    refused too: KS001); once the replicas of both shards replayed that (and the copy), within
 *    `replicaWaitMillis`, the topology recording the new holder is published. A fence that
 *    ran out first (writes may have gone through) sends the step back to `guarded`.
 * 4. `published → cleaned`: after `cleanupDelayMillis`, the source's tables are truncated and the
 *    fence row removed.
 *
 * Every phase is saved in the catalog before its work, so `resume` runs the step from where it
 * stopped and `abort` undoes it (unless it was published: the new holder took writes, so abort
 * finishes it). The publish is recorded pending before it is sent; one whose outcome is unknown
 * stops the move with nothing reverted, and `resume` and `abort` settle its version first
 * ({@link publishClaim}): an abort never clears the target or lowers the fence while that version
 * could still commit.
 */
import type { Client } from 'pg';
import type { Topology } from '../../cluster/topology';
import type { MoveContext } from './move-context';
import type { MoveBatch, UnshardedPhase, UnshardedStep } from './move-record';
import { MoveFailedError } from './mover-errors';
import { KyselyScaleError } from '../../kernel/errors';
import { redactText } from '../../kernel/redact';
import { quoteTable } from './shard-guard-sql';
import { runDdl } from './shard-guard';
import { serverNow, waitForOlderTransactions } from './slot-fence';
import { requiredVersion, restoreRequiredVersion } from './guard-state';
import { queryChecked } from './mover-epoch';
import { waitForShardReplicas } from './replica-wait';
import { clearTables, compareTables, copyShapes, copyTables, maySkipTriggers, sequencesOf, syncSequences, type CopyShape } from './unsharded-copy';
import { UNSHARDED_FENCE_SQL, UNSHARDED_GUARD_PRESENT_SQL, unshardedTableGuardSql } from './unsharded-guard-sql';
import type { UnshardedHookPoint } from './move-context';
import { claimState, publishClaim, type PublishSubject, type VersionClaim } from './publish-settle';

/** The sessions and record of one unsharded step. */
interface StepScope {
  readonly ctx: MoveContext;
  readonly step: UnshardedStep;
  readonly source: Client;
  readonly target: Client;
  /** How each table is copied, and whether the target's session may skip its triggers (looked up once). */
  copy?: { readonly shapes: readonly CopyShape[]; readonly skipTriggers: boolean };
}

/** Runs the step from its phase to `cleaned`, trying the fenced copy up to `cutoverAttempts` times. */
export async function runUnshardedStep(ctx: MoveContext, step: UnshardedStep): Promise<void> {
  const scope = await openScope(ctx, step);
  let problem = '';
  for (let attempt = 0; ; ) {
    ctx.checkLock();
    switch (step.phase) {
      case 'cleaned':
      case 'aborted':
        return;
      case 'planned':
        await installGuards(scope);
        break;
      case 'guarded':
      case 'fenced': {
        if (attempt++ >= ctx.tuning.cutoverAttempts) {
          throw new MoveFailedError(`The unsharded tables' move (${step.source} → ${step.target}) did not settle in ${ctx.tuning.cutoverAttempts} attempts: ${problem} Resume to try again.`, {
            moveId: ctx.move.id,
            phase: step.phase,
          });
        }
        problem = await fencedCopy(scope);
        break;
      }
      case 'copied': {
        const outcome = await switchAndPublish(scope, undefined);
        if (outcome !== 'published') problem = outcome;
        break;
      }
      case 'published':
        await cleanUp(scope);
        break;
    }
  }
}

/** Rolls the step back, or finishes it when it was published. */
export async function abortUnshardedStep(ctx: MoveContext, step: UnshardedStep): Promise<'rolled-back' | 'completed' | 'none'> {
  if (step.phase === 'aborted') return 'none';
  if (step.phase === 'cleaned') return 'completed';
  const scope = await openScope(ctx, step);
  if (step.phase === 'fenced' || step.phase === 'copied') await settleForAbort(scope);
  if (step.phase === 'published') {
    await cleanUp(scope);
    return 'completed';
  }
  if (step.version !== undefined && step.prevRequired !== undefined && (await sourceSwitched(scope))) await restoreRequiredVersion(scope.source, step.version, step.prevRequired);
  await lowerFence(scope, true);
  if (step.phase === 'fenced' || step.phase === 'copied') await clearTarget(scope);
  await enter(scope, 'aborted');
  return 'rolled-back';
}

/**
 * A `fenced` or `copied` step found by an abort, settled by its version before anything is undone
 * ({@link claimState}): published → `published` (the abort finishes it); certainly not published,
 * or never sent (no publish pending) → left for the rollback; a publish that may still commit is
 * sent again as that version and the step finished, never rolled back under it (a failure to
 * settle stops the abort with nothing changed).
 */
async function settleForAbort(scope: StepScope): Promise<void> {
  const { ctx, step } = scope;
  if (step.version === undefined) return;
  const latest = await ctx.topology();
  const state = await claimState(ctx, claimOf(scope), latest);
  if (state === 'published') return enterPublished(scope);
  // A publish is sent only after the source's switch, and only a rollback (after settling) or the
  // clean-up lowers a switched fence: a pending mark on a source not switched is stale, none can be out.
  if (state === 'open' && step.publishPending !== undefined && (await sourceSwitched(scope))) {
    ctx.checkLock();
    if ((await publishClaim(ctx, step, claimOf(scope), latest.withUnshardedShard(step.target, step.version), subjectOf(scope))) === 'published') return enterPublished(scope);
  }
  delete step.publishPending; // nothing of the version can commit any more: the rollback is safe
}

async function openScope(ctx: MoveContext, step: UnshardedStep): Promise<StepScope> {
  const topology = await ctx.topology();
  const [source, target] = await Promise.all([ctx.session(step.source, topology), ctx.session(step.target, topology)]);
  return { ctx, step, source, target };
}

/** planned → guarded. */
async function installGuards(scope: StepScope): Promise<void> {
  const { source, step } = scope;
  await hook(scope, 'unsharded-planned');
  const { rows } = await source.query<{ ok: boolean }>(`select to_regclass('kysely_scale.unsharded_fence') is not null and to_regproc('kysely_scale.unsharded_gate') is not null as ok`);
  if (rows[0]?.ok !== true) await runDdl(source, UNSHARDED_FENCE_SQL, { purpose: 'install the unsharded tables\' fence', tables: [] });
  for (const table of step.tables) {
    const { rows: present } = await source.query<{ n: number; rls: boolean }>(UNSHARDED_GUARD_PRESENT_SQL, [quoteTable(table)]);
    if (present[0]?.n !== 2) await runDdl(source, unshardedTableGuardSql(table, present[0]?.rls !== true), { purpose: 'install the unsharded tables\' fence', tables: [table] });
  }
  await enter(scope, 'guarded');
}

/** guarded (or an interrupted fenced) → copied → published; back to guarded with the reason when this attempt could not settle. */
async function fencedCopy(scope: StepScope): Promise<string> {
  const { ctx, step, source } = scope;
  const latest = await ctx.topology();
  step.version = latest.version + 1;
  step.prevRequired = await requiredVersion(source);
  const [sequences, copy] = await Promise.all([sequencesOf(source, scope.target, step.tables), copyPlan(scope)]);
  await enter(scope, 'fenced'); // saved before the fence goes up: a crash from here on finds it
  await queryChecked(
    source,
    `insert into kysely_scale.unsharded_fence (move_id, next_version, fenced_until)
       values (${Math.trunc(Number(ctx.move.id))}, ${Math.trunc(Number(step.version))}, clock_timestamp() + make_interval(secs => ${Number(ctx.tuning.fenceTimeoutMillis)}::float8 / 1000))
       on conflict (only_row) do update set move_id = excluded.move_id, next_version = excluded.next_version, fenced_until = excluded.fenced_until`,
  );
  const fencedAt = await serverNow(source);
  const raised = ctx.clock.monotonicNow();
  const blockers = await waitForOlderTransactions(source, fencedAt, ctx.tuning.drainTimeoutMillis, (ms) => ctx.pause(ms), () => ctx.clock.monotonicNow());
  if (blockers.length > 0) {
    await lowerFence(scope, false);
    await enter(scope, 'guarded');
    return `transactions older than the fence stayed open on "${step.source}" (backend ${blockers.map((b) => `${b.pid} "${b.applicationName}"`).join(', ')}).`;
  }
  await hook(scope, 'unsharded-fenced');
  try {
    step.rowsCopied = 0;
    // Not paced (writers wait under the fence), but stopped at once by the context's stop signal when the lock is lost.
    const stop = ctx.pace([step.source, step.target], latest).signal;
    step.rowsCopied = await copyTables(source, scope.target, copy.shapes, copy.skipTriggers, ctx.clock, (n) => report(scope, n), stop);
    ctx.countCopied(step.rowsCopied);
    const differences = await compareTables(source, scope.target, copy.shapes, step);
    if (differences.length > 0) {
      await clearTarget(scope);
      await enter(scope, 'guarded');
      throw new MoveFailedError(`Verification of the unsharded tables failed after the copy (${step.source} → ${step.target}): ${differences.slice(0, 5).join('; ')}`, { moveId: ctx.move.id, phase: 'fenced' });
    }
    await syncSequences(source, scope.target, sequences);
  } catch (error) {
    await afterCopyFailure(scope, error);
  }
  await enter(scope, 'copied');
  await hook(scope, 'unsharded-copied');
  const outcome = await switchAndPublish(scope, raised);
  return outcome === 'published' ? '' : outcome;
}

/**
 * copied → published: the source switches (unless it did already), then the new holder is
 * published. The version is settled first ({@link settled}), so a publish recorded pending by an
 * earlier run is found committed or sent again as that version, never misjudged.
 */
async function switchAndPublish(scope: StepScope, raisedAt: number | undefined): Promise<'published' | string> {
  const { ctx, step, source } = scope;
  const version = step.version!;
  const topology = await ctx.topology();
  if (await settled(scope, topology)) return 'published';
  if (!(await sourceSwitched(scope))) {
    if (step.publishPending !== undefined) {
      // Stale (see settleForAbort): no publish is sent before the switch.
      delete step.publishPending;
      await ctx.store.save(ctx.move);
    }
    try {
      await queryChecked(source, `do $switch$ declare n integer; begin
        update kysely_scale.unsharded_fence set fenced_until = 'infinity' where move_id = ${Number(ctx.move.id)} and next_version = ${Number(version)} and fenced_until > clock_timestamp();
        get diagnostics n = row_count;
        if n <> 1 then raise exception using errcode = 'KS003', message = 'the fence ran out'; end if;
        update kysely_scale.shard_guard set required_version = greatest(required_version, ${Number(version)}), updated_at = now();
      end $switch$`);
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'KS003') throw error;
      // Writes may have gone through since the fence ran out: copy again under a new fence.
      await lowerFence(scope, false);
      await clearTarget(scope);
      await enter(scope, 'guarded');
      return 'the fence ran out before the switch (the copy took longer than fenceTimeoutMillis: raise it).';
    }
  }
  if (raisedAt !== undefined) step.fenceMillis = Math.round(ctx.clock.monotonicNow() - raisedAt);
  await hook(scope, 'unsharded-switched');
  // The new holder's replicas must have replayed the copy (and the source's the switch) before a router reads them by the new version.
  await waitForShardReplicas(
    ctx,
    [
      { shard: topology.shardById(step.source), primary: source },
      { shard: topology.shardById(step.target), primary: scope.target },
    ],
    ctx.tuning.replicaWaitMillis,
    { phase: 'copied', unsharded: true },
  );
  const latest = await ctx.topology();
  if (await settled(scope, latest)) return 'published';
  ctx.checkLock();
  // Saved before it is sent: from here on a publish of the version may commit, whatever becomes of this process.
  const earlier = step.publishPending !== undefined;
  step.publishPending = version;
  await ctx.store.save(ctx.move);
  ctx.checkLock(); // the lock may have gone during the save: another operator may be settling this step now
  const outcome = await publishClaim(ctx, step, claimOf(scope), latest.withUnshardedShard(step.target, version), subjectOf(scope), earlier).catch(async (error: unknown) => {
    if (step.publishPending === undefined) await ctx.store.save(ctx.move).catch(() => undefined); // certainly not committed: abort may roll back
    throw error;
  });
  if (outcome === 'not-published') return takenByOther(scope, await ctx.topology());
  await enterPublished(scope);
  await hook(scope, 'unsharded-published');
  return 'published';
}

/**
 * Settles the step's version by the catalog's `latest` ({@link claimState}): `true` once published
 * (the step entered `published`), `false` while open; another change's version fails the step
 * (nothing of this version can commit any more: abort rolls it back).
 */
async function settled(scope: StepScope, latest: Topology): Promise<boolean> {
  const state = await claimState(scope.ctx, claimOf(scope), latest);
  if (state === 'open') return false;
  if (state === 'published') {
    await enterPublished(scope);
    return true;
  }
  return takenByOther(scope, latest);
}

/** The step's version was published by another change: nothing of it can commit any more (abort rolls the step back). */
async function takenByOther(scope: StepScope, latest: Topology): Promise<never> {
  const { ctx, step } = scope;
  delete step.publishPending;
  await ctx.store.save(ctx.move).catch(() => undefined);
  throw new MoveFailedError(`Topology version ${latest.version} was published by someone else while the unsharded tables moved (version ${step.version} was theirs); abort this move and plan again.`, {
    moveId: ctx.move.id,
    phase: 'copied',
  });
}

/** The step's claim on its version: its note, and the target recorded as the holder. */
function claimOf(scope: StepScope): VersionClaim {
  const { ctx, step } = scope;
  return { version: step.version!, note: `move ${ctx.move.id}: unsharded tables ${step.source} → ${step.target}`, holds: (latest) => latest.unshardedShardId === step.target };
}

/** How a publish failure of the step names it, and what stays as it is meanwhile. */
function subjectOf(scope: StepScope): PublishSubject {
  const { ctx, step } = scope;
  return {
    what: `unsharded tables ${step.source} → ${step.target}`,
    held: `the source "${step.source}" requires version ${step.version} and its fence on the unsharded tables stays up (routers at older versions are refused there, retryable), and the target "${step.target}" keeps its copies`,
    context: { moveId: ctx.move.id, phase: 'copied', unsharded: true },
  };
}

async function enterPublished(scope: StepScope): Promise<void> {
  delete scope.step.publishPending;
  await enter(scope, 'published');
}

/** published → cleaned. */
async function cleanUp(scope: StepScope): Promise<void> {
  const { ctx, step, source } = scope;
  await ctx.pause(ctx.tuning.cleanupDelayMillis);
  await hook(scope, 'unsharded-cleaning');
  if (step.tables.length > 0) await runDdl(source, `truncate ${step.tables.map(quoteTable).join(', ')}`, { purpose: 'remove the moved unsharded tables\' rows', tables: step.tables });
  await queryChecked(source, `delete from kysely_scale.unsharded_fence where move_id = ${Math.trunc(Number(ctx.move.id))}`);
  await enter(scope, 'cleaned');
}

async function sourceSwitched(scope: StepScope): Promise<boolean> {
  const { rows } = await scope.source.query<{ n: number }>(
    `select count(*)::int as n from kysely_scale.unsharded_fence where move_id = $1 and fenced_until = 'infinity'`,
    [scope.ctx.move.id],
  );
  return rows[0]?.n === 1;
}

/** Lifts the step's fence (`evenSwitched`: the permanent one too, for an abort). */
async function lowerFence(scope: StepScope, evenSwitched: boolean): Promise<void> {
  const exists = await scope.source.query<{ ok: boolean }>(`select to_regclass('kysely_scale.unsharded_fence') is not null as ok`);
  if (exists.rows[0]?.ok !== true) return;
  await queryChecked(scope.source, `delete from kysely_scale.unsharded_fence where move_id = ${Math.trunc(Number(scope.ctx.move.id))}${evenSwitched ? '' : ` and fenced_until <> 'infinity'`}`);
}

/** The tables' copy shapes and whether the target may skip its triggers (looked up once per step run). */
async function copyPlan(scope: StepScope): Promise<NonNullable<StepScope['copy']>> {
  if (scope.copy === undefined) {
    const [shapes, skipTriggers] = await Promise.all([copyShapes(scope.source, scope.step.tables), maySkipTriggers(scope.target)]);
    scope.copy = Object.freeze({ shapes, skipTriggers });
  }
  return scope.copy;
}

/** Deletes the target's rows of the tables (its copies were empty when the move was planned): nothing copied is left there. */
async function clearTarget(scope: StepScope): Promise<void> {
  const copy = await copyPlan(scope);
  await clearTables(scope.target, copy.shapes, copy.skipTriggers);
  scope.step.rowsCopied = 0;
}

/**
 * A fenced copy that failed: the fence is lowered at once on a session of its own (the copy may
 * have dropped the source session), so writers of the tables go through again instead of waiting
 * for `fenceTimeoutMillis`. A database error comes back as the mover's `E_MOVE_FAILED` with its SQLSTATE in
 * `context.sqlState`. Always throws.
 */
async function afterCopyFailure(scope: StepScope, error: unknown): Promise<never> {
  const { ctx, step } = scope;
  let lowered = false;
  try {
    const topology = await ctx.topology();
    if (topology.shardById(step.source) !== undefined) {
      await ctx.withFreshSession(step.source, topology, (client) => lowerFence({ ...scope, source: client }, false));
      lowered = true;
    }
  } catch {
    // The fence lifts itself after fenceTimeoutMillis.
  }
  // The step stays `fenced` (resume copies again, abort clears the target); `rowsCopied` says what the target holds.
  await ctx.store.save(ctx.move).catch(() => undefined);
  if (error instanceof KyselyScaleError) throw error;
  const sqlState = (error as { code?: unknown }).code;
  throw new MoveFailedError(
    `Copying the unsharded tables failed (${step.source} → ${step.target})${typeof sqlState === 'string' ? ` with SQLSTATE ${sqlState}` : ''}: ${redactText((error as Error).message)}. ` +
      `${lowered ? 'The fence was lowered; fix the cause, then resume (or abort).' : 'The fence lifts itself after fenceTimeoutMillis; fix the cause, then resume (or abort).'}`,
    { moveId: ctx.move.id, phase: 'fenced', ...(typeof sqlState === 'string' ? { sqlState } : {}) },
    error,
  );
}

async function enter(scope: StepScope, phase: UnshardedPhase): Promise<void> {
  scope.step.phase = phase;
  await scope.ctx.store.save(scope.ctx.move);
  report(scope, scope.step.rowsCopied ?? 0);
}

function report(scope: StepScope, rowsCopied: number): void {
  const { ctx, step } = scope;
  const batches = ctx.move.batches.length + 1;
  ctx.report({ moveId: ctx.move.id, batch: batches, batches, source: step.source, target: step.target, phase: `unsharded-${step.phase}`, rowsCopied, rowsTotal: step.rowsTotal ?? 0 });
}

/** Calls the test hook with a stand-in batch (index `batches.length`, no slots). */
async function hook(scope: StepScope, point: UnshardedHookPoint): Promise<void> {
  const { ctx, step } = scope;
  if (ctx.hook === undefined) return;
  const standIn: MoveBatch = { index: ctx.move.batches.length, source: step.source, target: step.target, slots: [], phase: 'planned' };
  await ctx.hook(standIn, point);
}
