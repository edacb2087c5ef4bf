/**
 * The middle phases of a batch. `catchUp`: change-log passes until the lag is small, then a pass
 * inside one repeatable-read snapshot of the source after which the target must equal that
 * snapshot: counts and checksums per slot per table are compared (no fence needed). `cutover`: the
 * fence goes up, older transactions end, a last pass applies the few remaining keys and those keys
 * are compared; then the shards switch (source hides and refuses, target shows; both require the
 * new version), replicas replay it, and the new version is published.
 */
import { MoveFailedError } from './mover-errors';
import { enterPhase, report, type BatchScope, type SourceScope, type TargetScope } from './batch-scope';
import { catchUpPass, changeLag, type AppliedKeys } from './change-catchup';
import { checksumDifferences, keyChecksums, slotChecksums, type Checksum } from './slot-checksum';
import { hideSlots, requiredVersion, restoreRequiredVersion, unhideSlots } from './guard-state';
import type { Topology } from '../../cluster/topology';
import { lowerFence, raiseFence, waitForOlderTransactions } from './slot-fence';
import { waitForReplicas } from './replica-wait';
import { formatSlotRanges } from './slot-ranges';
import { fenceSlot } from './shard-guard-sql';
import { yieldAfter } from './scan-pacer';
import { claimState, publishClaim, type PublishSubject, type VersionClaim, type VersionState } from './publish-settle';
import { beginChecked, queryChecked } from './mover-epoch';
import { rollbackOrDrop } from './shard-session';

// Entries per catch-up pass before the fence: a pass replaces each key's rows on the target in one
// transaction, a burst of work on both shards while the app writes; 5,000 made the catch-up after a
// long copy the slowest phase for the app (p99 10–32 ms at 5,000–10,000 rows/s, against 5–7 ms
// with 1,000), and the passes are paced like the copy.
const PASS_ENTRIES = 1000;
const MAX_PASSES = 1000;
// Entries left for the pass under the fence: each costs a key copy while writers of the moving slots wait.
const FENCED_LAG = 20;

/** copied → caught-up. */
export async function catchUp(scope: BatchScope): Promise<void> {
  const { ctx, batch, source, target, tables, slots, slotCount } = scope;
  // The stop signal: a pass piping a key's rows stops at once when the lock is lost.
  const options = { moveId: ctx.move.id, tables, clock: ctx.clock, signal: scope.pace.signal };
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    ctx.checkLock();
    const lag = await changeLag(source, ctx.move.id);
    report(scope, lag);
    if (lag <= ctx.tuning.catchUpLagEntries) break;
    const started = ctx.clock.monotonicNow();
    await catchUpPass(source, target, { ...options, limit: PASS_ENTRIES, snapshot: false });
    await yieldAfter(ctx.clock.monotonicNow() - started, scope.pace);
  }
  const expected = new Map<string, Map<number, Checksum>>();
  await catchUpPass(source, target, {
    ...options,
    limit: undefined,
    snapshot: true,
    inSnapshot: async (snapshot) => {
      for (const table of tables) expected.set(table.name, await slotChecksums(snapshot, table, slots, slotCount, { pace: scope.pace, inTransaction: true }));
    },
  });
  const differences: string[] = [];
  for (const table of tables) {
    const actual = await slotChecksums(target, table, slots, slotCount, { pace: scope.pace, inTransaction: false });
    differences.push(...checksumDifferences(`${table.name} slot`, expected.get(table.name)!, actual, [`source "${batch.source}"`, `target "${batch.target}"`]));
  }
  if (differences.length > 0) {
    throw new MoveFailedError(`Verification failed after catch-up (batch ${batch.index + 1}): ${differences.slice(0, 5).join('; ')}${differences.length > 5 ? ` … and ${differences.length - 5} more` : ''}`, {
      moveId: ctx.move.id,
      batch: batch.index,
      phase: 'copied',
    });
  }
  await enterPhase(scope, 'caught-up');
}

/** caught-up → published: fenced cutover, tried up to `cutoverAttempts` times. */
export async function cutover(scope: BatchScope): Promise<void> {
  const { ctx, batch } = scope;
  let problem = '';
  for (let attempt = 1; attempt <= ctx.tuning.cutoverAttempts; attempt++) {
    ctx.checkLock();
    const outcome = await fencedCutover(scope);
    if (outcome === 'published') return;
    problem = outcome;
    await catchUp(scope);
  }
  throw new MoveFailedError(`The cutover of batch ${batch.index + 1} (slots ${formatSlotRanges(batch.slots)}) did not settle in ${ctx.tuning.cutoverAttempts} attempts: ${problem} Resume to try again.`, {
    moveId: ctx.move.id,
    batch: batch.index,
    phase: 'caught-up',
  });
}

async function fencedCutover(scope: BatchScope): Promise<'published' | string> {
  const { ctx, batch, source, target, tables } = scope;
  // Apply what piled up during the snapshot verification now, so the fenced pass is short.
  for (let pass = 0; pass < 10 && (await changeLag(source, ctx.move.id)) > FENCED_LAG; pass++) {
    await catchUpPass(source, target, { moveId: ctx.move.id, tables, clock: ctx.clock, limit: PASS_ENTRIES, snapshot: false, signal: scope.pace.signal });
  }
  const latest = await ctx.topology();
  const version = latest.version + 1;
  // Built now (a few milliseconds for every slot), not while writers of the moving slots wait.
  const next = latest.withSlotsMoved(batch.slots, batch.target, version);
  // Saved before the fence goes up, so nothing but the switch itself runs while writers wait.
  const [prevSource, prevTarget] = await Promise.all([requiredVersion(source), requiredVersion(target)]);
  batch.version = version;
  batch.prevRequired = { source: prevSource, target: prevTarget };
  await enterPhase(scope, 'cutover');
  // The guarded claim the target's switch needs (see finishCutover), sent beside the fenced work
  // instead of after it: one catalog round trip less while writers of the moving slots wait. It is
  // settled before the source switches, so a command that lost the move switches nothing.
  await ctx.hook?.(batch, 'claiming');
  const claim = outcomeOf(ctx.store.claim(ctx.move));
  const fence = await raiseFence(source, ctx.move.id, ctx.tuning.fenceTimeoutMillis, version);
  await ctx.hook?.(batch, 'fencing');
  const blockers = await waitForOlderTransactions(source, fence.since, ctx.tuning.drainTimeoutMillis, (ms) => ctx.pause(ms), () => ctx.clock.monotonicNow(), undefined, fence.blockers);
  if (blockers.length > 0) {
    // The fence first: a claim that failed (or is slow) must not keep the writers fenced (review 80).
    await lowerFence(source, ctx.move.id);
    await claimed(claim);
    await enterPhase(scope, 'caught-up');
    return `transactions older than the fence stayed open on "${batch.source}" (backend ${blockers.map((b) => b.pid).join(', ')}).`;
  }
  await ctx.hook?.(batch, 'fenced');
  const applied = await catchUpPass(source, target, { moveId: ctx.move.id, tables, clock: ctx.clock, limit: undefined, snapshot: false, signal: scope.pace.signal });
  const differences = await compareKeys(scope, applied);
  if (differences.length > 0) {
    await lowerFence(source, ctx.move.id);
    await claimed(claim);
    await enterPhase(scope, 'copied');
    throw new MoveFailedError(`Verification of the last changes failed (batch ${batch.index + 1}): ${differences.slice(0, 5).join('; ')}`, { moveId: ctx.move.id, batch: batch.index, phase: 'caught-up' });
  }
  await claimed(claim);
  ctx.checkLock(); // a claim can succeed on a failed-over catalog whose lock session already ended
  if (!(await switchSource(scope, version))) {
    await enterPhase(scope, 'caught-up');
    return 'the fence ran out before the switch (raise fenceTimeoutMillis?).';
  }
  await ctx.hook?.(batch, 'switched');
  return finishCutover(scope, { latest, next, claimed: true });
}

/** A promise's outcome, never rejected (so a claim in flight beside other work cannot go unhandled): its error, or undefined. */
function outcomeOf(promise: Promise<void>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error ?? new Error('the claim failed'),
  );
}

/** Waits for a claim sent earlier ({@link outcomeOf}); throws its error. */
async function claimed(claim: Promise<unknown>): Promise<void> {
  const error = await claim;
  if (error !== undefined) throw error;
}

/** Source side of the switch, in one round trip: the fence becomes permanent (only if it still holds), the slots hidden, the new version required. */
async function switchSource(scope: BatchScope, version: number): Promise<boolean> {
  const { ctx, batch, source, bits, slotCount } = scope;
  try {
    const id = Number(ctx.move.id);
    await queryChecked(source, `do $switch$ declare n integer; begin
      update kysely_scale.slot_move set fenced_until = 'infinity' where slot = ${fenceSlot(id)} and move_id = ${id} and fenced_until > clock_timestamp();
      get diagnostics n = row_count;
      if n = 0 and exists (select 1 from kysely_scale.slot_move where slot = ${fenceSlot(id)} and move_id = ${id}) then
        raise exception using errcode = 'KS003', message = 'the fence ran out';
      end if;
      if n = 0 then -- a move begun before fence rows existed: its fence is on every slot's row
        update kysely_scale.slot_move set fenced_until = 'infinity' where move_id = ${id} and fenced_until > clock_timestamp();
        get diagnostics n = row_count;
        if n <> ${batch.slots.length} then raise exception using errcode = 'KS003', message = 'the fence ran out'; end if;
      end if;
      update kysely_scale.shard_guard set required_version = greatest(required_version, ${Number(version)}),
        hidden = coalesce(hidden, repeat('0', ${slotCount})::varbit) | ${bits}::varbit, updated_at = now();
    end $switch$`);
    return true;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'KS003') return false;
    throw error;
  }
}

/**
 * Target side of the switch, replicas, publish. Also where a resumed `cutover` continues once the
 * source switched (its fence is permanent), since every step is idempotent. `planned` holds the
 * catalog's topology when the cutover began and the one to publish (re-read when not given).
 *
 * The publish's outcome decides what may follow ({@link publishClaim}). Committed (or found
 * committed): `published`. Certainly not committed (its server process ended, version absent; the
 * catalog's own error): thrown as it is, and the caller may revert, unless an earlier publish of
 * the same version is still unsettled ({@link MoveBatch.publishPending}). Unknown: the version is
 * recorded as pending and the move stops ({@link MoveFailedError}) with the shards switched:
 * nothing is reverted or cleaned up until the version is settled (see {@link cutoverState}).
 */
export async function finishCutover(scope: BatchScope, planned?: { readonly latest: Topology; readonly next: Topology; readonly claimed?: true }): Promise<'published'> {
  const { ctx, batch } = scope;
  const version = batch.version!;
  // A guarded save before the target switches: a command that took the move over since (after a
  // lost operator lock) stops this one before it shows the slots on the target or publishes; sent
  // beside the target's switch, a refused claim still left the target requiring a version nobody
  // would publish (review 60). A fresh cutover sent it beside its fenced work (`claimed`).
  if (planned?.claimed !== true) await ctx.store.claim(ctx.move);
  ctx.checkLock(); // a claim can succeed on a failed-over catalog whose lock session already ended
  await ctx.hook?.(batch, 'showing');
  await showOnTarget(scope, version);
  await waitForReplicas(scope, ctx.tuning.replicaWaitMillis);
  const current = planned?.latest ?? (await ctx.topology());
  if (current.version >= version) return settleTaken(scope, current);
  ctx.checkLock();
  const next = planned?.next ?? current.withSlotsMoved(batch.slots, batch.target, version);
  await ctx.hook?.(batch, 'publishing');
  if ((await publishClaim(ctx, batch, claimOf(scope), next, subjectOf(scope))) === 'not-published') return settleTaken(scope, await ctx.topology());
  await enterPublished(scope);
  return 'published';
}

/** The batch's claim on its version: its note, and the batch's slots owned by the target. */
function claimOf(scope: Pick<BatchScope, 'ctx' | 'batch'>): VersionClaim {
  const { ctx, batch } = scope;
  return {
    version: batch.version!,
    note: `move ${ctx.move.id}: slots ${formatSlotRanges(batch.slots)} ${batch.source} → ${batch.target}`,
    holds: (latest) => batch.slots.every((s) => latest.shardForSlot(s).id === batch.target),
  };
}

/** How a publish failure of the batch names it, and what stays as it is meanwhile. */
function subjectOf(scope: BatchScope): PublishSubject {
  const { ctx, batch } = scope;
  return {
    what: `batch ${batch.index + 1}, slots ${formatSlotRanges(batch.slots)} ${batch.source} → ${batch.target}`,
    held: `both shards require version ${batch.version} (routers at older versions are refused, retryable)`,
    context: { moveId: ctx.move.id, batch: batch.index, phase: 'cutover' },
  };
}

async function enterPublished(scope: BatchScope): Promise<void> {
  delete scope.batch.publishPending;
  await enterPhase(scope, 'published');
}

/** The catalog holds the batch's version (or a newer one): published if it is this cutover's, else a failure (the caller reverts: nothing of this version can commit any more). */
async function settleTaken(scope: BatchScope, latest: Topology): Promise<'published'> {
  const { ctx, batch } = scope;
  if ((await versionState(scope, latest)) === 'published') {
    await enterPublished(scope);
    return 'published';
  }
  delete batch.publishPending;
  throw new MoveFailedError(`Topology version ${batch.version} was published by another change (the catalog's latest is ${latest.version}) before this cutover's: the cutover is rolled back; resume to try again.`, {
    moveId: ctx.move.id,
    batch: batch.index,
    phase: 'cutover',
    version: batch.version,
  });
}

/** Whether the batch's version is published ({@link claimState}: by the version number, then row `v`'s note and, when it is the latest, the batch's slots on the target). */
export async function versionState(scope: Pick<BatchScope, 'ctx' | 'batch'>, known?: Topology): Promise<VersionState> {
  return claimState(scope.ctx, claimOf(scope), known);
}

/**
 * Where a `cutover` found by `resume` or `abort` stands. `published` / `not-published`: settled by
 * {@link versionState}. Otherwise (version not in the catalog yet) the shards tell: `unswitched`
 * (the source never switched, or was reverted: no publish was ever sent); `switched` (the source
 * switched, the target still hides the slots: the publish comes after the target shows them, so
 * none was sent); `outstanding` (the target shows them, or a publish was recorded pending: one may
 * have been sent and may still commit: recorded as pending; only a commit of the version, or a
 * newer version, settles it).
 */
export async function cutoverState(scope: BatchScope): Promise<'published' | 'not-published' | 'unswitched' | 'switched' | 'outstanding'> {
  const { batch } = scope;
  if (batch.version === undefined) return 'unswitched';
  const state = await versionState(scope);
  if (state !== 'open') {
    delete batch.publishPending;
    return state;
  }
  // Asked before the source: a publish may have been sent once the target shows the slots, and
  // then only the version settles it, whatever became of the source's fence rows.
  if (batch.publishPending !== undefined || (await targetShows(scope))) {
    batch.publishPending = batch.version;
    return 'outstanding';
  }
  return (await sourceSwitched(scope)) ? 'switched' : 'unswitched';
}

/** Whether the target shows every slot of the batch (the last step before the publish). */
async function targetShows(scope: BatchScope): Promise<boolean> {
  const { target, bits, slotCount } = scope;
  const { rows } = await target.query<{ shows: boolean }>(`select hidden is null or (hidden & ${bits}::varbit) = repeat('0', ${slotCount})::varbit as shows from kysely_scale.shard_guard`);
  return rows[0]?.shows === true;
}

/**
 * Target side of the switch, in one statement: the target shows the slots and requires the new
 * version at the same instant. Showing them to older sessions too would count moved rows twice in
 * an older router's scatter whose source part ran before the switch (each part is a statement
 * with its own snapshot, maybe on a replica), and let its keyless or `or`-keyed writes, which
 * reach every shard unchanged, write moved rows here.
 */
async function showOnTarget(scope: BatchScope, version: number): Promise<void> {
  const { target, bits, slotCount } = scope;
  await queryChecked(
    target,
    `update kysely_scale.shard_guard set required_version = greatest(required_version, ${Math.trunc(Number(version))}),
       hidden = nullif(coalesce(hidden, repeat('0', ${slotCount})::varbit) & ~${bits}::varbit, repeat('0', ${slotCount})::varbit), updated_at = now()`,
  );
}

/**
 * Undoes the shard side of an unpublished cutover: required versions back, slots hidden on the
 * target and shown on the source, the move's fence lifted. Only once no publish of the batch's
 * version can commit any more ({@link cutoverState}). The target first, so the two never both
 * show the slots; the source's part is one transaction, so a source still marked switched
 * (permanent fence) is never also shown to older routers.
 */
export async function revertCutover(scope: BatchScope): Promise<void> {
  await revertTarget(scope);
  await revertSource(scope);
  delete scope.batch.publishPending;
}

/**
 * The target's part of {@link revertCutover} (idempotent; an abort runs it alone while the source
 * does not answer): the slots hidden and the required version put back, in one transaction that
 * checks the command's epoch first (mover-epoch.ts): after a newer command acted on the shard,
 * nothing of this revert lands there.
 */
export async function revertTarget(scope: TargetScope): Promise<void> {
  const { batch, target, bits, slotCount } = scope;
  if (batch.version === undefined || batch.prevRequired === undefined) return;
  const { version, prevRequired } = batch;
  await inTransaction(target, async () => {
    await hideSlots(target, bits, slotCount);
    await restoreRequiredVersion(target, version, prevRequired.target);
  });
}

/** The source's part of {@link revertCutover} (idempotent; an abort runs it alone while the target does not answer): the move's fence lifted, the slots shown, the required version put back, in one checked transaction. */
export async function revertSource(scope: SourceScope): Promise<void> {
  const { ctx, batch, source, bits, slotCount } = scope;
  if (batch.version === undefined || batch.prevRequired === undefined) return;
  const { version, prevRequired } = batch;
  await inTransaction(source, async () => {
    await source.query('update kysely_scale.slot_move set fenced_until = null where move_id = $1', [ctx.move.id]);
    await unhideSlots(source, bits, slotCount);
    await restoreRequiredVersion(source, version, prevRequired.source);
  });
}

/** Runs `fn` in a transaction of `client` that checks the command's epoch first; rolled back (or the session dropped) on failure. */
async function inTransaction(client: BatchScope['source'], fn: () => Promise<void>): Promise<void> {
  await beginChecked(client);
  try {
    await fn();
    await client.query('commit');
  } catch (error) {
    await rollbackOrDrop(client);
    throw error;
  }
}

/** Whether the source's switch happened (its fence on the batch's slots is permanent). */
export async function sourceSwitched(scope: BatchScope): Promise<boolean> {
  const id = Number(scope.ctx.move.id);
  const { rows } = await scope.source.query<{ fence: boolean; n: number }>(
    `select exists (select 1 from kysely_scale.slot_move where slot = $2 and move_id = $1 and fenced_until = 'infinity') as fence,
            (select count(*)::int from kysely_scale.slot_move where slot >= 0 and move_id = $1 and fenced_until = 'infinity') as n`,
    [id, fenceSlot(id)],
  );
  return rows[0]?.fence === true || rows[0]?.n === scope.batch.slots.length;
}

async function compareKeys(scope: BatchScope, applied: AppliedKeys): Promise<string[]> {
  const { batch, source, target, tables } = scope;
  const out: string[] = [];
  for (const table of tables) {
    const keys = applied.get(table.name) ?? [];
    if (keys.length === 0) continue;
    const [a, b] = await Promise.all([keyChecksums(source, table, keys), keyChecksums(target, table, keys)]);
    out.push(...checksumDifferences(`${table.name} key`, a, b, [`source "${batch.source}"`, `target "${batch.target}"`]));
  }
  return out;
}

