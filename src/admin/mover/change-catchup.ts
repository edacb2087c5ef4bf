/**
 * Catch-up: the source's change log names the keys written in the moving slots since capture
 * began; a pass takes some entries, and replaces each named key's rows on the target with the
 * source's current rows. Entries are deleted in a source transaction that commits only after the
 * target's transaction did, so a crash in between leaves them to be applied again (re-applying a
 * key is harmless: it copies the current rows). Order does not matter, since every pass reads the
 * rows as they are now, and an entry committed after a pass read its key stays for the next pass.
 * Every statement of a pass runs under the session's deadline (`shard-deadlines.ts`): a shard that
 * stops answering stops the move; one whose keys have many rows takes the time it needs.
 */
import type { Client } from 'pg';
import type { Clock } from '../../kernel/clock';
import { pipeRows } from './slot-copy';
import { quoteTable } from './shard-guard-sql';
import { keyFilterSql, type KeyedTable } from './table-keys';
import { rollbackOrDrop } from './shard-session';
import { beginChecked, epochCheck } from './mover-epoch';

/** Keys per chunk of a catch-up statement. */
const KEYS_PER_STATEMENT = 1000;

/** What one pass applied: distinct keys per table name. */
export type AppliedKeys = Map<string, string[]>;

/** Options of {@link catchUpPass}. */
export interface CatchUpOptions {
  readonly moveId: number;
  readonly tables: readonly KeyedTable[];
  /** Most entries one pass takes (undefined: all). */
  readonly limit: number | undefined;
  /** `repeatable read`: the pass reads the rows of one snapshot, and `inSnapshot` runs in it before the source commits. */
  readonly snapshot: boolean;
  readonly clock: Clock;
  readonly inSnapshot?: (source: Client) => Promise<void>;
  /**
   * The command's stop signal (`ScanPace.signal`, fired when its operator lock is lost): a
   * key's rows being piped stop at once (a key may own many rows), and the pass fails with the
   * signal's reason, both transactions rolled back (its entries stay for the next command).
   */
  readonly signal?: AbortSignal | undefined;
}

/** Entries waiting in the source's change log for `moveId`. */
export async function changeLag(source: Client, moveId: number): Promise<number> {
  const { rows } = await source.query<{ n: string }>('select count(*) as n from kysely_scale.change_log where move_id = $1', [moveId]);
  return Number(rows[0]?.n ?? 0);
}

/** One catch-up pass from `source` to `target`. */
export async function catchUpPass(source: Client, target: Client, options: CatchUpOptions): Promise<AppliedKeys> {
  try {
    const limit = options.limit === undefined ? '' : ` limit ${Math.floor(options.limit)}`;
    // One round trip (simple-query protocol, so literal values): the pass under the fence is mostly round trips.
    // The source's change-log delete is a change too: checked against the command's epoch (mover-epoch.ts) in the same message.
    const check = await epochCheck(source);
    const results = (await source
      .query(
        `${options.snapshot ? 'begin isolation level repeatable read' : 'begin'}; ${check.sql}
       delete from kysely_scale.change_log where id in (select id from kysely_scale.change_log where move_id = ${Math.trunc(Number(options.moveId))} order by id${limit}) returning tbl, key`,
      )
      .catch((error: unknown) => {
        throw check.map(error);
      })) as unknown as { rows: { tbl: string; key: string }[] }[];
    const rows = results.at(-1)!.rows;
    const applied: AppliedKeys = new Map();
    for (const row of rows) {
      const keys = applied.get(row.tbl) ?? [];
      keys.push(row.key);
      applied.set(row.tbl, keys);
    }
    for (const [name, keys] of applied) applied.set(name, [...new Set(keys)]);
    if (applied.size > 0) {
      await beginChecked(target);
      try {
        for (const table of options.tables) {
          const keys = applied.get(table.name) ?? [];
          for (let i = 0; i < keys.length; i += KEYS_PER_STATEMENT) {
            options.signal?.throwIfAborted();
            const where = keyFilterSql(table, keys.slice(i, i + KEYS_PER_STATEMENT));
            await target.query(`delete from ${quoteTable(table.name)} where ${where}`);
            await pipeRows(source, target, table, where, { clock: options.clock, maxRowsPerSecond: undefined, onRows: () => undefined, signal: options.signal });
          }
        }
        await target.query('commit');
      } catch (error) {
        await rollbackOrDrop(target, options.clock);
        throw error;
      }
    }
    if (options.inSnapshot !== undefined) await options.inSnapshot(source);
    await source.query('commit');
    return applied;
  } catch (error) {
    await rollbackOrDrop(source, options.clock);
    throw error;
  }
}
