/**
 * The first phases of a batch. `startCapture`: the source starts logging writes to the moving
 * slots and the target hides them, then the mover waits for transactions that began before the
 * capture (they might write without logging). `copySlotRows`: each table's rows are copied.
 */
import { KyselyScaleError } from '../../kernel/errors';
import { redactText } from '../../kernel/redact';
import { MoveFailedError } from './mover-errors';
import { enterPhase, report, type BatchScope } from './batch-scope';
import type { MoveContext } from './move-context';
import { copySlots } from './slot-copy';
import { hideSlots } from './guard-state';
import { installCapture } from './shard-guard';
import { fenceSlot } from './shard-guard-sql';
import { serverNow, waitForOlderTransactions } from './slot-fence';
import { queryChecked } from './mover-epoch';

/** planned → capturing. */
export async function startCapture(scope: BatchScope): Promise<void> {
  const { ctx, batch, source, target, tables, bits, slotCount } = scope;
  ctx.checkLock();
  // The moving slots and the move's fence row (slot-fence.ts), unfenced.
  const slots = [...batch.slots, fenceSlot(ctx.move.id)].map((n) => Math.trunc(Number(n)));
  await queryChecked(
    source,
    `insert into kysely_scale.slot_move (slot, move_id, next_version) select s, ${Math.trunc(Number(ctx.move.id))}, 0 from unnest('{${slots.join(',')}}'::int[]) s
       on conflict (slot) do update set move_id = excluded.move_id, next_version = 0, fenced_until = null`,
  );
  await installCapture(source, tables, slotCount);
  await hideSlots(target, bits, slotCount);
  const since = await serverNow(source);
  const blockers = await waitForOlderTransactions(source, since, ctx.tuning.drainTimeoutMillis, (ms) => ctx.pause(ms), () => ctx.clock.monotonicNow());
  if (blockers.length > 0) {
    throw new MoveFailedError(
      `Transactions older than the change capture are still open on "${batch.source}" (backend ${blockers.map((b) => `${b.pid} "${b.applicationName}" ${b.state}`).join(', ')}): they could write without being logged. End them, then resume.`,
      { moveId: ctx.move.id, batch: batch.index, phase: 'planned', pids: blockers.map((b) => b.pid) },
    );
  }
  await enterPhase(scope, 'capturing');
}

/**
 * A database error of a table's copy as the mover's `E_MOVE_FAILED`, naming the shards and the
 * table, with the SQLSTATE in `context.sqlState`. The likeliest cause of one (such as 22P04, extra
 * data after the last column) is a migration run on one shard during the move, around the
 * operator lock (by the app's own migrator, or psql): the copy of the other rows stays safe.
 */
function copyFailure(scope: BatchScope, table: string, error: unknown): unknown {
  const sqlState = (error as { code?: unknown } | null)?.code;
  if (error instanceof KyselyScaleError || typeof sqlState !== 'string') return error;
  const { ctx, batch } = scope;
  return new MoveFailedError(
    `Copying table ${table} from "${batch.source}" to "${batch.target}" failed with SQLSTATE ${sqlState}: ${redactText((error as Error).message)}. ` +
      'If a migration changed the table on some shards during the move, finish it on every shard; then resume (or abort).',
    { moveId: ctx.move.id, batch: batch.index, phase: 'capturing', table, source: batch.source, target: batch.target, sqlState },
    error,
  );
}

/** How often the rows copied so far are saved while a table copies (what `moves` and `status` show). */
export const LIVE_SAVE_MILLIS = 1000;

/**
 * Saves the move every `millis` until stopped; `stop()` waits for a save in flight, so no save of
 * this copy lands after the phase's own. A failed save is skipped: the count is informational, and
 * the phase's save reports a catalog that stopped answering.
 */
function saveEvery(ctx: MoveContext, millis: number): { stop(): Promise<void> } {
  let stopped = false;
  let inFlight: Promise<void> = Promise.resolve();
  let cancel: () => void = () => undefined;
  const tick = (): void => {
    inFlight = ctx.store.save(ctx.move).catch(() => undefined).then(() => {
      if (!stopped) cancel = ctx.clock.setTimeout(tick, millis);
    });
  };
  cancel = ctx.clock.setTimeout(tick, millis);
  return {
    async stop() {
      stopped = true;
      cancel();
      await inFlight;
    },
  };
}

/** capturing → copied. `restarted`: an earlier run may have left a partial table on the target. */
export async function copySlotRows(scope: BatchScope, restarted: boolean): Promise<void> {
  const { ctx, batch, tables, slots, slotCount, target, topology } = scope;
  const reader = await ctx.extraSession(batch.source, topology);
  batch.copiedTables ??= [];
  // A table whose copy was interrupted starts over: count from the finished tables' rows (set
  // before the first live save; a record saved before the field existed held only those in rowsCopied).
  batch.rowsCopiedDone ??= batch.rowsCopied ?? 0;
  batch.rowsCopied = batch.rowsCopiedDone;
  let lastReport = ctx.clock.monotonicNow();
  for (const table of tables) {
    if (batch.copiedTables.includes(table.name)) continue;
    ctx.checkLock();
    const before: number = batch.rowsCopied;
    const saver = saveEvery(ctx, LIVE_SAVE_MILLIS);
    const rows = await copySlots(reader, target, table, slots, slotCount, {
      clock: ctx.clock,
      maxRowsPerSecond: ctx.tuning.maxRowsPerSecond,
      pace: scope.pace,
      // A command that took the move over (resume, abort after a lost lock) may be clearing the target: no rows of this copy may land after it.
      beforeCommit: async () => {
        await ctx.store.claim(ctx.move);
        ctx.checkLock(); // a claim can succeed on a failed-over catalog whose lock session already ended
      },
      onRows: (n) => {
        batch.rowsCopied! += n;
        const now = ctx.clock.monotonicNow();
        if (now - lastReport >= 200) {
          lastReport = now;
          report(scope);
        }
      },
    }, restarted)
      .catch((error: unknown) => {
        throw copyFailure(scope, table.name, error);
      })
      .finally(() => saver.stop());
    batch.rowsCopied = before + rows;
    batch.rowsCopiedDone = batch.rowsCopied;
    ctx.countCopied(rows);
    batch.copiedTables.push(table.name);
    await ctx.store.save(ctx.move);
    report(scope);
  }
  await enterPhase(scope, 'copied');
}
