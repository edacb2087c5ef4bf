/**
 * The last phase of a batch, and its rollback. `cleanUp` (published → cleaned): the source's rows
 * of the moved slots are deleted in throttled chunks (nothing reads them: they are hidden, and
 * stale sessions are refused), then its fence, capture and hidden bits go. The rollback of a
 * batch not published (an abort, `move-abort.ts`) has a step per shard, so that one runs while the
 * other does not answer: `releaseSource` (the capture and fence go, so the source takes writes
 * again at once) and `clearTarget` (the target's copies deleted while still hidden, then shown:
 * there are none left). Every statement runs under the session's deadline (`shard-deadlines.ts`):
 * a shard that stops answering stops the step, a delete that is only long (a key with millions of
 * rows) is let finish.
 */
import type { Client } from 'pg';
import { enterPhase, report, type SourceScope, type TargetScope } from './batch-scope';
import { unhideSlots } from './guard-state';
import { dropCapture } from './shard-guard';
import { quoteIdentifier, quoteTable, slotFilterSql } from './shard-guard-sql';
import { keyFilterSql, type KeyedTable } from './table-keys';
import { SlotLines, unescapeCopyText, type SlotSet } from './slot-lines';
import { discard } from './slot-checksum';
import { yieldAfter, type ScanPace } from './scan-pacer';
import { pagedCopyOut } from './paged-scan';
import { throttleDelayMillis } from './copy-throttle';
import { queryChecked } from './mover-epoch';

// Keys per delete: the first chunk's size, then sized so each delete takes about one pacing slice
// (PACE_SLICE_MILLIS), within bounds. A fixed 1,000 keys took 10-20 ms per delete on a busy
// 2-core shard, each a burst the app's writes queued behind (23-77 slow writes in the
// clean-up phase of the resharding benchmark at 10,000 rows/s).
const FIRST_KEYS_PER_DELETE = 200;
const MIN_KEYS_PER_DELETE = 20;
const MAX_KEYS_PER_DELETE = 2000;

/** published → cleaned (on the source alone: the target owns the slots already). */
export async function cleanUp(scope: SourceScope): Promise<void> {
  const { ctx, batch, source, tables, bits, slots, slotCount } = scope;
  await ctx.pause(ctx.tuning.cleanupDelayMillis);
  const started = ctx.clock.monotonicNow();
  let deleted = 0;
  let announced = false;
  let reportedAt = -Infinity;
  report(scope, undefined, 0);
  for (const table of tables) {
    const keys = await slotKeys(source, table, slots, slotCount, scope.pace);
    let chunk = FIRST_KEYS_PER_DELETE;
    for (let i = 0; i < keys.length; ) {
      if (!announced) {
        announced = true;
        await ctx.hook?.(batch, 'cleaning');
      }
      const deleteStarted = ctx.clock.monotonicNow();
      const { rowCount } = await queryChecked(source, `delete from ${quoteTable(table.name)} where ${keyFilterSql(table, keys.slice(i, i + chunk))}`);
      i += chunk; // before the next chunk's size is chosen
      deleted += rowCount ?? 0;
      if (ctx.clock.monotonicNow() - reportedAt >= 200) {
        reportedAt = ctx.clock.monotonicNow();
        report(scope, undefined, deleted);
      }
      const took = ctx.clock.monotonicNow() - deleteStarted;
      await yieldAfter(took, scope.pace);
      chunk = nextChunk(chunk, took, scope.pace.sliceMillis);
      const delay = throttleDelayMillis(deleted, ctx.clock.monotonicNow() - started, ctx.tuning.maxRowsPerSecond);
      if (delay > 0) await ctx.pause(delay);
    }
  }
  await releaseSource(scope);
  await unhideSlots(source, bits, slotCount);
  await enterPhase(scope, 'cleaned');
}

/** The next delete's key count: this one's scaled toward `sliceMillis` (at most doubled), within bounds. */
export function nextChunk(chunk: number, tookMillis: number, sliceMillis: number): number {
  const scaled = tookMillis > 0 ? Math.round((chunk * sliceMillis) / tookMillis) : chunk * 2;
  return Math.max(MIN_KEYS_PER_DELETE, Math.min(MAX_KEYS_PER_DELETE, chunk * 2, scaled));
}

/** The distinct keys of `table`'s rows in `slots` (the shard streams every key; the mover picks them by slot). */
async function slotKeys(client: Client, table: KeyedTable, slots: SlotSet, slotCount: number, pace: ScanPace): Promise<string[]> {
  const keys = new Set<string>();
  const lines = new SlotLines({ slots, slotCount, forward: false, onRow: (_slot, key) => keys.add(unescapeCopyText(key.toString('utf8'))) });
  const t = quoteTable(table.name);
  await pagedCopyOut(client, { table: t, columns: `${quoteIdentifier(table.keyColumn)}::text`, pace, inTransaction: false }, [lines, discard()]);
  return [...keys];
}

/**
 * The target's side of a rollback (idempotent): its copies of the batch's slots deleted while they
 * are hidden, then the slots shown again (no row of them is left there). Only for a batch that is
 * never to be published: the target does not own those slots.
 */
export async function clearTarget(scope: TargetScope): Promise<void> {
  const { target, tables, bits, slotCount } = scope;
  for (const table of tables) await queryChecked(target, `delete from ${quoteTable(table.name)} where ${slotFilterSql(table, bits, slotCount)}`);
  await unhideSlots(target, bits, slotCount);
}

/**
 * Drops the source's state of the batch: its slots' rows of `kysely_scale.slot_move`; and once no
 * other batch of the move holds state on this source (one past `planned` and not yet cleaned or
 * aborted: an abort walks the batches in reverse, so a later batch is aborted while an earlier one
 * may still be switched; one `aborted` whose rollback is unfinished is being undone with this one),
 * the move's fence row, its change log and the capture triggers once no slot moves.
 * Idempotent: an abort that stopped part-way runs it again.
 */
export async function releaseSource(scope: SourceScope): Promise<void> {
  const { ctx, batch, source, tables } = scope;
  const holding = ctx.move.batches.some((b) => b !== batch && b.source === batch.source && b.phase !== 'planned' && b.phase !== 'cleaned' && b.phase !== 'aborted');
  const id = Math.trunc(Number(ctx.move.id));
  if (holding) {
    await queryChecked(source, `delete from kysely_scale.slot_move where move_id = ${id} and slot = any('{${batch.slots.map((n) => Math.trunc(Number(n))).join(',')}}'::int[])`);
    return;
  }
  // One implicit transaction, checked against the command's epoch (mover-epoch.ts).
  await queryChecked(source, `delete from kysely_scale.slot_move where move_id = ${id}; delete from kysely_scale.change_log where move_id = ${id};`);
  const { rows } = await source.query<{ busy: boolean }>('select exists (select 1 from kysely_scale.slot_move) as busy');
  if (rows[0]?.busy !== true) await dropCapture(source, tables);
}
