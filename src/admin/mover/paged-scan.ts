/**
 * Paced table scans as `COPY … TO STDOUT`. Pausing the reader of one COPY does not pause the
 * shard: its backend writes rows into the socket as fast as it can, and loopback receive buffers
 * grow to `net.ipv4.tcp_rmem`'s maximum (32 MB on the benchmark machines), so a scan of a table's
 * keys runs at full speed in one burst whatever the reader does (30–77 ms bursts of slow app
 * writes at the start of each scan in the resharding benchmark). Here a scan is a series of
 * statements over ranges of heap pages (TID range scans, PostgreSQL 14+), all in one snapshot,
 * each sized toward one pacing slice of the shard's work, with the pacer's pause between them: a
 * pause between statements is a pause of the backend. A range's COPY that sends no byte for the
 * session's `statementTimeoutMillis` while the mover reads, or the one COPY of an unpaged table for
 * `copyIdleTimeoutMillis`, has its shard probed: a shard that stops answering fails the scan with
 * `ShardSilentError`, one at work goes on (`shard-deadlines.ts`).
 */
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import type { Client } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { Clock } from '../../kernel/clock';
import { destroySocket } from '../server-client';
import { copyFailure, copyOut, stoppedBy } from './copy-out';
import { MoveFailedError } from './mover-errors';
import { ScanPacer, yieldAfter, type ScanPace } from './scan-pacer';
import { blockersContext, describeBlockers, LOCK_WAIT_MILLIS, lockForReading, shardName } from './lock-blockers';
import { statementTimeoutOf, watchCopy } from './shard-deadlines';

/** Pages of the first range (then sized toward the pacing slice; a page of wide rows can be most of a slice). */
export const FIRST_RANGE_PAGES = 1;
/** Most pages in one range (128 MB of 8 kB pages): a bound, in case the work per page is tiny. */
export const MAX_RANGE_PAGES = 16_384;
/**
 * How long a scan waits for its table's `ACCESS SHARE` lock: only an `ACCESS EXCLUSIVE` request
 * (a migration's `ALTER TABLE`, held up by a long app transaction) makes it wait. The mover's lock
 * bound ({@link LOCK_WAIT_MILLIS}), which its deadlines apply to any statement waiting on a lock.
 */
export const SCAN_LOCK_TIMEOUT_MILLIS = LOCK_WAIT_MILLIS;
/** How often, at most, a scan checks between ranges whether its lock holds up another session. */
export const BLOCKING_CHECK_MILLIS = 100;

/** A paced scan of one table. */
export interface PagedScan {
  /** The table, quoted (as in SQL); `x` is its alias in `columns`. */
  readonly table: string;
  /** The select list, such as `"id"::text, *`. */
  readonly columns: string;
  readonly pace: ScanPace;
  /**
   * The client is in a repeatable-read (or serializable) transaction, whose snapshot the scan
   * reads (its `SET LOCAL`s and its lock stay for the rest of it); otherwise the scan runs in a
   * read-only repeatable-read transaction of its own.
   */
  readonly inTransaction: boolean;
  /** Called once another session waits for the scan's lock (the scan stops pausing): lift what else holds the stream back. */
  readonly onBlocking?: () => void;
}

type Stages = readonly [...(NodeJS.ReadWriteStream | Readable | Writable)[], Writable];

/**
 * Streams `scan`'s rows through `stages`, range by range. A table that is not a plain heap table
 * without inheritance children (a partitioned, foreign or inherited one, or another storage
 * method), or a server before PostgreSQL 14 (no TID range scan), is read by one statement paced
 * by its reader. On failure the client is dropped (never reused, as {@link copyOut}) and the
 * error rethrown.
 */
export async function pagedCopyOut(client: Client, scan: PagedScan, stages: Stages): Promise<void> {
  const { clock } = scan.pace;
  try {
    if (!scan.inTransaction) await client.query('begin isolation level repeatable read read only');
    // Before a snapshot of our own is taken (by the next query): no rewrite or truncation of the
    // table's tail while the scan runs, so every row the snapshot shows lies within the pages
    // counted below. TID range scans even where the shard or role turned them off (each range
    // would be a full scan); no idle-in-transaction timeout between ranges.
    await lockTable(client, scan.table);
    const started = clock.monotonicNow();
    const { rows } = await client.query<{ isolation: string; paged: boolean | null; pages: number }>(
      `select current_setting('transaction_isolation') as isolation,
              current_setting('server_version_num')::int >= 140000 and c.relkind = 'r' and a.amname = 'heap' and not c.relhassubclass as paged,
              (pg_relation_size(c.oid) / current_setting('block_size')::int)::int as pages
         from pg_class c left join pg_am a on a.oid = c.relam where c.oid = $1::regclass`,
      [scan.table],
    );
    const info = rows[0]!;
    if (info.isolation !== 'repeatable read' && info.isolation !== 'serializable') {
      throw new Error(`A paged scan reads one snapshot: its transaction must be repeatable read or serializable, not ${info.isolation}.`);
    }
    if (info.paged === true) await copyRanges(client, scan, info.pages, clock.monotonicNow() - started, stages);
    else await copyOut(client, `copy (select ${scan.columns} from ${scan.table} x) to stdout`, [new ScanPacer(scan.pace), ...stages], undefined, scan.pace.signal);
    if (!scan.inTransaction) await client.query('commit');
  } catch (error) {
    destroySocket(client);
    throw stoppedBy(scan.pace.signal) ?? copyFailure(error, stages);
  }
}

async function lockTable(client: Client, table: string): Promise<void> {
  const blockers = await lockForReading(client, table, SCAN_LOCK_TIMEOUT_MILLIS, 'set local enable_tidscan = on; set local idle_in_transaction_session_timeout = 0');
  if (blockers === undefined) return;
  const shard = await shardName(client);
  throw new MoveFailedError(
    `The scan of ${table} on shard "${shard}" could not lock it for reading within ${SCAN_LOCK_TIMEOUT_MILLIS} ms: ` +
      (blockers.length > 0 ? describeBlockers(blockers) : 'an ACCESS EXCLUSIVE lock (a migration\'s ALTER TABLE, perhaps waiting for a long transaction) holds or awaits it') +
      '. Let the migration finish (or end the transactions it waits for), then resume.',
    { table, shard, sqlState: '55P03', ...blockersContext(blockers) },
  );
}

async function copyRanges(client: Client, scan: PagedScan, tablePages: number, firstQueryMillis: number, stages: Stages): Promise<void> {
  const { clock } = scan.pace;
  const head = new PassThrough();
  const { signal } = scan.pace;
  // Aborted (the command's lock lost): every stage is destroyed at once, a throttle's wait included.
  const done = pipeline([head, ...stages], signal === undefined ? {} : { signal });
  const downstreamEnded = done.then(() => {
    throw new Error('the scan pipeline ended before the scan');
  });
  downstreamEnded.catch(() => undefined);
  // A statement's fixed cost (round trip, parse, plan), not the shard's work on its range: the
  // shortest statement seen (the first query's time only until a range is timed).
  let fixedMillis = firstQueryMillis;
  let checkedAt = clock.monotonicNow();
  let unpaced = false;
  try {
    let pages = FIRST_RANGE_PAGES;
    for (let from = 0; from < tablePages; ) {
      signal?.throwIfAborted();
      const to = Math.min(from + pages, tablePages);
      const rangePages = to - from;
      const started = clock.monotonicNow();
      // `only`: a child table attached during the scan is not part of the table it counted.
      const sql = `copy (select ${scan.columns} from only ${scan.table} x where ctid >= '(${from},0)'::tid and ctid < '(${to},0)'::tid) to stdout`;
      const reader = client.query(copyTo(sql));
      // ~3 ms of the shard's work by design: a statement's deadline (time the stages hold it back does not count).
      const watch = watchCopy(client, reader, 'out', statementTimeoutOf(client));
      const waited = await forward(reader, head, clock, downstreamEnded).catch((error: unknown) => {
        throw watch.error() ?? error;
      });
      from = to;
      if (from >= tablePages) break;
      const took = clock.monotonicNow() - started - waited; // less the time the stages held the stream back (a throttle)
      fixedMillis = Math.min(fixedMillis, took);
      const work = Math.max(0, took - fixedMillis);
      if (!unpaced && clock.monotonicNow() - checkedAt >= BLOCKING_CHECK_MILLIS) {
        checkedAt = clock.monotonicNow();
        unpaced = await blocksOthers(client);
        if (unpaced) scan.onBlocking?.();
      }
      // A session waits for our lock (a migration, and the app queued behind it): no pauses now, so the lock goes soonest.
      if (unpaced) {
        pages = Math.min(MAX_RANGE_PAGES, pages * 2);
        continue;
      }
      await yieldAfter(work, scan.pace);
      pages = nextRangePages(pages, work, scan.pace.sliceMillis);
      // A range the stages held back (a throttle) holds the table's lock as long, unchecked: keep
      // each within about one check's interval, so a migration queued behind it is seen in time.
      if (waited > BLOCKING_CHECK_MILLIS) pages = Math.max(1, Math.min(pages, Math.floor((rangePages * BLOCKING_CHECK_MILLIS) / (took + waited))));
    }
    head.end();
    await done;
  } catch (error) {
    head.destroy();
    throw error;
  }
}

/** Whether a session waits for a lock this session holds. */
async function blocksOthers(client: Client): Promise<boolean> {
  const { rows } = await client.query<{ blocking: boolean }>(
    `select exists (select 1 from pg_stat_activity where wait_event_type = 'Lock' and pg_backend_pid() = any (pg_blocking_pids(pid))) as blocking`,
  );
  return rows[0]?.blocking === true;
}

/** Writes `reader` into `head` (not ending it); resolves with the milliseconds `head` held the reader back. */
async function forward(reader: Readable, head: PassThrough, clock: Clock, downstreamEnded: Promise<never>): Promise<number> {
  let waited = 0;
  reader.on('data', (chunk: Buffer) => {
    if (head.write(chunk)) return;
    reader.pause();
    const since = clock.monotonicNow();
    head.once('drain', () => {
      waited += clock.monotonicNow() - since;
      reader.resume();
    });
  });
  await Promise.race([finished(reader), downstreamEnded]);
  return waited;
}

/** The next range's pages: this one's scaled toward `sliceMillis` of work (at most doubled), within bounds. */
export function nextRangePages(pages: number, workMillis: number, sliceMillis: number): number {
  const scaled = workMillis > 0 ? Math.floor((pages * sliceMillis) / workMillis) : pages * 2;
  return Math.max(1, Math.min(MAX_RANGE_PAGES, pages * 2, scaled));
}
