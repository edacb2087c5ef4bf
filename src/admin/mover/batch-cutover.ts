/**
 * The middle phases of a batch. `catchUp`: change-log passes until the lag is small, then a pass
 * inside one repeatable-read snapshot of the source after which the target must equal that
 * snapshot: counts and checksums per slot per table are compared (no fence needed). `cutover`: the
 * fence goes up, older transactions end, a last pass applies the few remaining keys and those keys
 * are compared; then the shards switch (source hides and refuses, target shows; both require the
 * new version), replicas replay it, and the new version is published.
 */
import { MoveFailedError } from './mover-errors';
import { enterPhase, report, type BatchScope } from './batch-scope';
import { catchUpPass, changeLag, type AppliedKeys } from './change-catchup';
import { checksumDifferences, keyChecksums, slotChecksums, type Checksum } from './slot-checksum';
import { hideSlots, requiredVersion, requireVersion, restoreRequiredVersion, unhideSlots } from './guard-state';
import { lowerFence, raiseFence, waitForOlderTransactions } from './slot-fence';
import { waitForReplicas } from './replica-wait';
import { formatSlotRanges } from './slot-ranges';

const PASS_ENTRIES = 5000;
const MAX_PASSES = 200;

/** copied → caught-up. */
export async function catchUp(scope: BatchScope): Promise<void> {
  const { ctx, batch, source, target, tables, bits, slotCount } = scope;
  const options = { moveId: ctx.move.id, tables, clock: ctx.clock };
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    ctx.checkLock();
    const lag = await changeLag(source, ctx.move.id);
    report(scope, lag);
    if (lag <= ctx.tuning.catchUpLagEntries) break;
    await catchUpPass(source, target, { ...options, limit: PASS_ENTRIES, snapshot: false });
  }
  const expected = new Map<string, Map<number, Checksum>>();
  await catchUpPass(source, target, {
    ...options,
    limit: undefined,
    snapshot: true,
    inSnapshot: async (snapshot) => {
      for (const table of tables) expected.set(table.name, await slotChecksums(snapshot, table, bits, slotCount));
    },
  });
  const differences: string[] = [];
  for (const table of tables) {
    const actual = await slotChecksums(target, table, bits, slotCount);
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
  const version = (await ctx.topology()).version + 1;
  const fencedAt = await raiseFence(source, ctx.move.id, ctx.tuning.fenceTimeoutMillis, version);
  const blockers = await waitForOlderTransactions(source, fencedAt, ctx.tuning.drainTimeoutMillis, (ms) => ctx.pause(ms), () => ctx.clock.monotonicNow());
  if (blockers.length > 0) {
    await lowerFence(source, ctx.move.id);
    return `transactions older than the fence stayed open on "${batch.source}" (backend ${blockers.map((b) => b.pid).join(', ')}).`;
  }
  await ctx.hook?.(batch, 'fenced');
  const applied = await catchUpPass(source, target, { moveId: ctx.move.id, tables, clock: ctx.clock, limit: undefined, snapshot: false });
  const differences = await compareKeys(scope, applied);
  if (differences.length > 0) {
    await lowerFence(source, ctx.move.id);
    throw new MoveFailedError(`Verification of the last changes failed (batch ${batch.index + 1}): ${differences.slice(0, 5).join('; ')}`, { moveId: ctx.move.id, batch: batch.index, phase: 'caught-up' });
  }
  batch.version = version;
  batch.prevRequired = { source: await requiredVersion(source), target: await requiredVersion(target) };
  await enterPhase(scope, 'cutover');
  if (!(await switchSource(scope, version))) {
    batch.phase = 'caught-up';
    await ctx.store.save(ctx.move);
    return 'the fence ran out before the switch (raise fenceTimeoutMillis?).';
  }
  await ctx.hook?.(batch, 'switched');
  return finishCutover(scope);
}

/** Source side of the switch: the fence becomes permanent (only if it still holds), the slots hidden, the new version required. */
async function switchSource(scope: BatchScope, version: number): Promise<boolean> {
  const { ctx, batch, source, bits, slotCount } = scope;
  await source.query('begin');
  try {
    const { rowCount } = await source.query(`update kysely_scale.slot_move set fenced_until = 'infinity' where move_id = $1 and fenced_until > clock_timestamp()`, [ctx.move.id]);
    if (rowCount !== batch.slots.length) {
      await source.query('rollback');
      return false;
    }
    await requireVersion(source, version);
    await hideSlots(source, bits, slotCount);
    await source.query('commit');
    return true;
  } catch (error) {
    await source.query('rollback').catch(() => undefined);
    throw error;
  }
}

/**
 * Target side of the switch, replicas, publish. Also where a resumed `cutover` continues once the
 * source switched (its fence is permanent), since every step is idempotent.
 */
export async function finishCutover(scope: BatchScope): Promise<'published'> {
  const { ctx, batch, target, bits, slotCount } = scope;
  const version = batch.version!;
  await target.query('begin');
  try {
    await requireVersion(target, version);
    await unhideSlots(target, bits, slotCount);
    await target.query('commit');
  } catch (error) {
    await target.query('rollback').catch(() => undefined);
    throw error;
  }
  const latest = await ctx.topology();
  await waitForReplicas(scope, ctx.tuning.replicaWaitMillis);
  if (latest.version < version) {
    ctx.checkLock();
    await ctx.catalog.publish(latest.withSlotsMoved(batch.slots, batch.target, version), `move ${ctx.move.id}: slots ${formatSlotRanges(batch.slots)} ${batch.source} → ${batch.target}`);
  }
  await enterPhase(scope, 'published');
  return 'published';
}

/** Undoes the shard side of an unpublished cutover: required versions back, slots hidden on the target and shown on the source. */
export async function revertCutover(scope: BatchScope): Promise<void> {
  const { batch, source, target, bits, slotCount } = scope;
  if (batch.version === undefined || batch.prevRequired === undefined) return;
  await target.query('begin');
  await hideSlots(target, bits, slotCount);
  await restoreRequiredVersion(target, batch.version, batch.prevRequired.target);
  await target.query('commit');
  await source.query('begin');
  await unhideSlots(source, bits, slotCount);
  await restoreRequiredVersion(source, batch.version, batch.prevRequired.source);
  await source.query('commit');
}

/** Whether the source's switch happened (its fence on the batch's slots is permanent). */
export async function sourceSwitched(scope: BatchScope): Promise<boolean> {
  const { rows } = await scope.source.query<{ n: number }>(`select count(*)::int as n from kysely_scale.slot_move where move_id = $1 and fenced_until = 'infinity'`, [scope.ctx.move.id]);
  return rows[0]?.n === scope.batch.slots.length;
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

