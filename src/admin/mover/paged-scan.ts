/**
 * Paced table scans as `COPY … TO STDOUT`. Pausing the reader of one COPY does not pause the
 * shard: its backend writes rows into the socket as fast as it can, and loopback receive buffers
 * grow to `net.ipv4.tcp_rmem`'s maximum (32 MB on the benchmark machines), so a scan of a table's
 * keys runs at full speed in one burst whatever the reader does (30–77 ms bursts of slow app
 * writes at the start of each scan in the resharding benchmark). Here a scan is a series of
 * statements over ranges of heap pages (TID range scans, PostgreSQL 14+), all in one snapshot,
 * each sized toward one pacing slice of the shard's work, with the pacer's pause between them: a
 * pause between statements is a pause of the backend.
 */
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import type { Client } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { destroySocket } from '../server-client';
import { copyOut } from './copy-out';
import { ScanPacer, yieldAfter, type ScanPace } from './scan-pacer';

/** Pages of the first range (then sized toward the pacing slice). */
export const FIRST_RANGE_PAGES = 8;
/** Fewest pages in a range (64 kB of 8 kB pages): below that, the statement's fixed cost is most of its time. */
export const MIN_RANGE_PAGES = 8;
/** Most pages in one range (128 MB of 8 kB pages): a bound, in case the work per page is tiny. */
export const MAX_RANGE_PAGES = 16_384;

/** A paced scan of one table. */
export interface PagedScan {
  /** The table, quoted (as in SQL). */
  readonly table: string;
  /** The `COPY (select … from table where <filter>) TO STDOUT` statement for a row filter. */
  readonly copySql: (filter: string) => string;
  readonly pace: ScanPace;
  /**
   * The client is in a repeatable-read (or serializable) transaction, whose snapshot the scan
   * reads (its `SET LOCAL`s stay for the rest of it); otherwise the scan runs in a read-only
   * repeatable-read transaction of its own.
   */
  readonly inTransaction: boolean;
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
  try {
    if (!scan.inTransaction) await client.query('begin isolation level repeatable read read only');
    // Before a snapshot of our own is taken (by the next query): no rewrite or truncation of the
    // table's tail while the scan runs, so every row the snapshot shows lies within the pages
    // counted below. TID range scans even where the shard or role turned them off (each range
    // would be a full scan); no idle-in-transaction timeout between ranges.
    await client.query(`lock table ${scan.table} in access share mode; set local enable_tidscan = on; set local idle_in_transaction_session_timeout = 0`);
    const started = scan.pace.clock.monotonicNow();
    const { rows } = await client.query<{ isolation: string; paged: boolean | null; pages: number }>(
      `select current_setting('transaction_isolation') as isolation,
              current_setting('server_version_num')::int >= 140000 and c.relkind = 'r' and a.amname = 'heap' and not c.relhassubclass as paged,
              (pg_relation_size(c.oid) / current_setting('block_size')::int)::int as pages
         from pg_class c left join pg_am a on a.oid = c.relam where c.oid = $1::regclass`,
      [scan.table],
    );
    // A statement's fixed cost (round trip, parse, plan): not the shard's work on the range.
    const fixedMillis = scan.pace.clock.monotonicNow() - started;
    const info = rows[0]!;
    if (info.isolation !== 'repeatable read' && info.isolation !== 'serializable') {
      throw new Error(`A paged scan reads one snapshot: its transaction must be repeatable read or serializable, not ${info.isolation}.`);
    }
    if (info.paged === true) await copyRanges(client, scan, info.pages, fixedMillis, stages);
    else await copyOut(client, scan.copySql('true'), [new ScanPacer(scan.pace), ...stages]);
    if (!scan.inTransaction) await client.query('commit');
  } catch (error) {
    destroySocket(client);
    throw error;
  }
}

async function copyRanges(client: Client, scan: PagedScan, tablePages: number, fixedMillis: number, stages: Stages): Promise<void> {
  const { clock } = scan.pace;
  const head = new PassThrough();
  const done = pipeline([head, ...stages]);
  const downstreamEnded = done.then(() => {
    throw new Error('the scan pipeline ended before the scan');
  });
  downstreamEnded.catch(() => undefined);
  try {
    let pages = FIRST_RANGE_PAGES;
    for (let from = 0; from < tablePages; ) {
      const to = Math.min(from + pages, tablePages);
      const started = clock.monotonicNow();
      const waited = await forward(client.query(copyTo(scan.copySql(`ctid >= '(${from},0)'::tid and ctid < '(${to},0)'::tid`))), head, clock, downstreamEnded);
      from = to;
      if (from >= tablePages) break;
      // The shard's work: the range's time less the statement's fixed cost and the time the stages held the stream back (a throttle).
      const work = Math.max(0, clock.monotonicNow() - started - waited - fixedMillis);
      await yieldAfter(work, scan.pace);
      pages = nextRangePages(pages, work, scan.pace.sliceMillis);
    }
    head.end();
    await done;
  } catch (error) {
    head.destroy();
    throw error;
  }
}

/** Writes `reader` into `head` (not ending it); resolves with the milliseconds `head` held the reader back. */
async function forward(reader: Readable, head: PassThrough, clock: ScanPace['clock'], downstreamEnded: Promise<never>): Promise<number> {
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
  return Math.max(MIN_RANGE_PAGES, Math.min(MAX_RANGE_PAGES, pages * 2, scaled));
}
