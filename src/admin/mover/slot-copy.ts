/**
 * The copy phase: each table's rows of the moving slots go from the source to the target through
 * `COPY (select …) TO STDOUT` piped into `COPY … FROM STDIN`, throttled, one transaction per
 * table on the target (a crash leaves no half table: the resumed copy starts that table again).
 */
import { pipeline } from 'node:stream/promises';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { Client } from 'pg';
import type { Clock } from '../../kernel/clock';
import { CopyThrottle } from './copy-throttle';
import { quoteTable, slotFilterSql } from './shard-guard-sql';
import type { KeyedTable } from './table-keys';

/** Options of {@link copyRows}. */
export interface CopyRowsOptions {
  readonly clock: Clock;
  readonly maxRowsPerSecond: number | undefined;
  readonly onRows: (rows: number) => void;
}

/**
 * Copies the rows selected by `where` of `table` from `source` to `target`, in one target
 * transaction that first deletes whatever `where` selects there (an earlier attempt's rows).
 * Returns the rows copied.
 */
export async function copyRows(source: Client, target: Client, table: KeyedTable, where: string, options: CopyRowsOptions, clearTarget: boolean): Promise<number> {
  await target.query('begin');
  try {
    if (clearTarget) await target.query(`delete from ${quoteTable(table.name)} where ${where}`);
    const rows = await pipeRows(source, target, table, where, options);
    await target.query('commit');
    return rows;
  } catch (error) {
    await target.query('rollback').catch(() => undefined);
    throw error;
  }
}

/** Pipes the rows selected by `where` from `source` into `target` (inside whatever transaction `target` is in). */
export async function pipeRows(source: Client, target: Client, table: KeyedTable, where: string, options: CopyRowsOptions): Promise<number> {
  const t = quoteTable(table.name);
  const throttle = new CopyThrottle(options.clock, options.maxRowsPerSecond, options.onRows);
  const out = source.query(copyTo(`copy (select * from ${t} where ${where}) to stdout`));
  const into = target.query(copyFrom(`copy ${t} from stdin`));
  await pipeline(out, throttle, into);
  return throttle.rows;
}

/** Copies `table`'s rows of the slots in `bits` (a varbit literal). */
export function copySlots(source: Client, target: Client, table: KeyedTable, bits: string, slotCount: number, options: CopyRowsOptions, clearTarget: boolean): Promise<number> {
  return copyRows(source, target, table, slotFilterSql(table, bits, slotCount), options, clearTarget);
}
