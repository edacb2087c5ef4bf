/**
 * The copy phase: each table's rows of the moving slots go from the source to the target through
 * `COPY (select …) TO STDOUT` piped into `COPY … FROM STDIN`, throttled, one transaction per
 * table on the target (a crash leaves no half table: the resumed copy starts that table again).
 * The rows of the moving slots are picked by the mover ({@link SlotLines}), not by the source.
 */
import type { Client } from 'pg';
import type { Clock } from '../../kernel/clock';
import { CopyThrottle } from './copy-throttle';
import type { ScanPace } from './scan-pacer';
import { pagedCopyOut } from './paged-scan';
import { quoteIdentifier, quoteTable, slotBitsLiteral, slotFilterSql } from './shard-guard-sql';
import { SlotLines, type SlotSet } from './slot-lines';
import type { KeyedTable } from './table-keys';
import { copyIn, copyOut } from './copy-out';
import { rollbackOrDrop } from './shard-session';
import { statementTimeoutOf } from './shard-deadlines';
import { beginChecked } from './mover-epoch';

/** Options of {@link copySlots} and {@link pipeRows}. */
export interface CopyRowsOptions {
  readonly clock: Clock;
  readonly maxRowsPerSecond: number | undefined;
  readonly onRows: (rows: number) => void;
}

/** Options of {@link copySlots}. */
export interface CopySlotsOptions extends CopyRowsOptions {
  readonly pace: ScanPace;
  /** Runs just before the target's transaction commits; a rejection rolls the table's copy back (the move was taken over by another command). */
  readonly beforeCommit?: () => Promise<void>;
}

/** Options of {@link pipeRows}. */
export interface PipeRowsOptions extends CopyRowsOptions {
  /** The command's stop signal ({@link ScanPace.signal}): aborted, the pipe stops at once and fails with its reason. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Pipes the rows selected by `where` (a catch-up's keys) from `source` into `target` (inside
 * whatever transaction `target` is in); a side that shows no progress for its session's
 * `statementTimeoutMillis` has its shard probed (`shard-deadlines.ts`): silent, the pipe fails; at
 * work (a key with many rows, the target's triggers), it goes on, unless `signal` stops it. A
 * failed pipe drops `source`'s session; `target`'s transaction is the caller's to roll back.
 */
export async function pipeRows(source: Client, target: Client, table: KeyedTable, where: string, options: PipeRowsOptions): Promise<number> {
  const t = quoteTable(table.name);
  const throttle = new CopyThrottle(options.clock, options.maxRowsPerSecond, options.onRows);
  const into = copyIn(target, `copy ${t} from stdin`, statementTimeoutOf(target));
  await copyOut(source, `copy (select * from ${t} where ${where}) to stdout`, [throttle, into], statementTimeoutOf(source), options.signal);
  return throttle.rows;
}

/**
 * Copies `table`'s rows of the slots in `slots` from `source` to `target`, in one target
 * transaction (`clearTarget`: that first deletes what an earlier attempt left there). The source
 * streams the whole table, in paced ranges of pages, in one snapshot; the mover keeps the rows of
 * `slots`. Returns the rows copied.
 */
export async function copySlots(source: Client, target: Client, table: KeyedTable, slots: SlotSet, slotCount: number, options: CopySlotsOptions, clearTarget: boolean): Promise<number> {
  const t = quoteTable(table.name);
  await beginChecked(target); // the command's epoch, held until the commit (mover-epoch.ts)
  try {
    // A resumed copy only: the SQL twin runs per row here, once.
    if (clearTarget) await target.query(`delete from ${t} where ${slotFilterSql(table, slotBitsLiteral(slotsIn(slots), slotCount), slotCount)}`);
    const lines = new SlotLines({ slots, slotCount, forward: true });
    const throttle = new CopyThrottle(options.clock, options.maxRowsPerSecond, options.onRows);
    const into = copyIn(target, `copy ${t} from stdin`);
    // A migration queued behind the scan's lock lifts the throttle too: the lock is held until the last row passes.
    const scan = { table: t, columns: `${quoteIdentifier(table.keyColumn)}::text, *`, pace: options.pace, inTransaction: false, onBlocking: () => throttle.lift() };
    await pagedCopyOut(source, scan, [lines, throttle, into]);
    await options.beforeCommit?.();
    await target.query('commit');
    return throttle.rows;
  } catch (error) {
    await rollbackOrDrop(target, options.clock);
    throw error;
  }
}

function slotsIn(set: SlotSet): number[] {
  const out: number[] = [];
  set.forEach((b, s) => {
    if (b === 1) out.push(s);
  });
  return out;
}
