/**
 * The mover's paced scans run as statements over ranges of heap pages in one snapshot, so the
 * pause between ranges pauses the shard's backend (a single COPY's backend fills the socket at
 * full speed whatever its reader does). Checked on a real shard: the rows equal one COPY's, a
 * scan does not see rows written while it runs (nor one row twice when an update moves it to a
 * page not yet read), its backend is idle while the reader pauses, a failing stage drops the
 * session, a table growing during the scan is not read past its pages at the start, ranges stay
 * large when each statement has a long round trip (or the first one was slow), TID range scans are
 * used even where the session turned them off, partitioned or inherited tables are read by one
 * statement, the table's lock is waited for at most SCAN_LOCK_TIMEOUT_MILLIS, and a session
 * queued behind that lock ends the pauses.
 */
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { Transform, Writable } from 'node:stream';
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { copyOut } from '../../../src/admin/mover/copy-out';
import { BLOCKING_CHECK_MILLIS, pagedCopyOut, SCAN_LOCK_TIMEOUT_MILLIS, type PagedScan } from '../../../src/admin/mover/paged-scan';
import { discard } from '../../../src/admin/mover/slot-checksum';
import { openShardSession, type ShardSession } from '../../../src/admin/mover/shard-session';
import type { ScanPace } from '../../../src/admin/mover/scan-pacer';
import { systemClock, type Clock } from '../../../src/kernel/clock';
import { untilWaitingForLock } from '../../support/lock-waits';

let cluster: TestCluster;
let url: string;
let admin: Client;
const sessions: ShardSession[] = [];
const ROWS = 50_000;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('paged_scan');
  url = shard!.primaryUrl;
  admin = directClient(url);
  await admin.connect();
  await admin.query('create table users (id bigint primary key, name text)');
  await admin.query(`insert into users select g, 'user ' || g from generate_series(1, ${ROWS}) g`);
  await admin.query('create table events (id bigint, at int) partition by range (at)');
  await admin.query('create table events_a partition of events for values from (0) to (100)');
  await admin.query('create table events_b partition of events for values from (100) to (200)');
  await admin.query('insert into events select g, g % 200 from generate_series(1, 2000) g');
  await admin.query('vacuum analyze users');
}, 60_000);

afterAll(async () => {
  for (const s of sessions) s.destroy();
  await admin?.end();
  await cluster?.stop();
});

async function session(): Promise<ShardSession> {
  const s = await openShardSession(url, 5000);
  sessions.push(s);
  return s;
}

/** A pace that calls `between` at each pause between ranges (as the mover's load probe). */
function pace(between: () => Promise<void> = async () => undefined): ScanPace {
  return { clock: systemClock, niceRatio: 0, sliceMillis: 1, probeSlowMillis: 1000, probe: async () => (await between(), 0) };
}

function collect(into: string[]): Writable {
  let rest = '';
  return new Writable({
    write(chunk: Buffer, _e, cb) {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop()!;
      into.push(...lines);
      cb();
    },
  });
}

const usersScan = (p: ScanPace, inTransaction = false): PagedScan => ({ table: '"users"', columns: 'id, name', pace: p, inTransaction });

/** The COPY statements `client` runs from now on. */
function copiesOf(client: Client): string[] {
  const texts: string[] = [];
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: unknown }).query = (q: unknown, ...rest: unknown[]) => {
    const text = (q as { text?: unknown } | null)?.text;
    if (typeof text === 'string' && /^copy /i.test(text)) texts.push(text);
    return query(q, ...rest);
  };
  return texts;
}

/** The page ranges of the COPY statements in `texts` (each must be one). */
function rangesOf(texts: readonly string[]): [number, number][] {
  return texts.map((text) => {
    const m = /where ctid >= '\((\d+),0\)'::tid and ctid < '\((\d+),0\)'::tid\) to stdout$/.exec(text);
    if (m === null) throw new Error(`not a bounded page range: ${text}`);
    return [Number(m[1]), Number(m[2])];
  });
}

async function pagesOf(table: string): Promise<number> {
  const { rows } = await admin.query<{ pages: number }>(`select (pg_relation_size($1::regclass) / current_setting('block_size')::int)::int as pages`, [table]);
  return rows[0]!.pages;
}

async function allRows(): Promise<string[]> {
  const rows: string[] = [];
  await copyOut(admin, 'copy (select id, name from users) to stdout', [collect(rows)]);
  return rows.sort();
}

test('a paged scan gives exactly the rows of one COPY, in many ranges', async () => {
  const { client } = await session();
  let pauses = 0;
  const rows: string[] = [];
  await pagedCopyOut(client, usersScan(pace(async () => void pauses++)), [collect(rows)]);
  expect(rows.sort()).toEqual(await allRows());
  expect(rows).toHaveLength(ROWS);
  expect(pauses).toBeGreaterThan(5);
  // The session is usable afterwards: its own transaction ended.
  expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
});

test('a paged scan reads one snapshot: writes during the scan are not seen, and a row an update moves ahead is not read twice', async () => {
  const before = await allRows();
  const { client } = await session();
  let wrote = false;
  const rows: string[] = [];
  await pagedCopyOut(client, usersScan(pace(async () => {
    if (wrote) return;
    wrote = true;
    // After the first range: new versions of early rows land on pages the scan has not read yet.
    await admin.query(`update users set name = name || ' changed' where id <= 2000`);
    await admin.query(`insert into users select g, 'late ' || g from generate_series(${ROWS + 1}, ${ROWS + 500}) g`);
    await admin.query(`delete from users where id > ${ROWS - 500} and id <= ${ROWS}`);
  })), [collect(rows)]);
  expect(wrote).toBe(true);
  expect(rows.sort()).toEqual(before);
  // Put the table back for the other tests.
  await admin.query(`delete from users where id > ${ROWS}`);
  await admin.query(`insert into users select g, 'user ' || g from generate_series(${ROWS - 499}, ${ROWS}) g`);
  await admin.query(`update users set name = 'user ' || id where id <= 2000`);
  await admin.query('vacuum users');
});

test('between ranges the shard\'s backend is idle: pausing the reader pauses the scan on the server', async () => {
  const { client } = await session();
  const { rows: [me] } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let reached!: () => void;
  const paused = new Promise<void>((resolve) => (reached = resolve));
  let first = true;
  const scan = pagedCopyOut(client, usersScan(pace(async () => {
    if (!first) return;
    first = false;
    reached();
    await held;
  })), [discard()]);
  await paused;
  const { rows } = await admin.query<{ state: string }>('select state from pg_stat_activity where pid = $1', [me!.pid]);
  expect(rows[0]?.state).toBe('idle in transaction');
  release();
  await scan;
});

test('a stage failing mid-scan rejects the scan and drops its session (its snapshot goes at once)', async () => {
  const { client } = await session();
  let chunks = 0;
  const failing = new Transform({ transform: (chunk, _e, cb) => (++chunks === 3 ? cb(new Error('bad line')) : cb(null, chunk)) });
  await expect(pagedCopyOut(client, usersScan(pace()), [failing, discard()])).rejects.toThrow('bad line');
  await expect(client.query('select 1')).rejects.toThrow();
});

test('a partitioned table is read by one statement, with every row', async () => {
  const { client } = await session();
  let pauses = 0;
  const rows: string[] = [];
  const copies = copiesOf(client);
  await pagedCopyOut(client, { table: '"events"', columns: 'id, at', pace: { ...pace(async () => void pauses++), sliceMillis: 60_000 }, inTransaction: false }, [collect(rows)]);
  expect(copies).toEqual(['copy (select id, at from "events" x) to stdout']);
  expect(rows).toHaveLength(2000);
  expect(pauses).toBe(0);
});

test('a table growing during the scan is read only up to its pages at the start, in bounded ranges, with every row of the snapshot', async () => {
  const before = await allRows();
  const pages = await pagesOf('users');
  const { client } = await session();
  let grown = false;
  const copies = copiesOf(client);
  const rows: string[] = [];
  await pagedCopyOut(client, usersScan(pace(async () => {
    if (grown) return;
    grown = true;
    await admin.query(`insert into users select g, 'late ' || g from generate_series(${ROWS + 1}, ${ROWS + 100_000}) g`);
  })), [collect(rows)]);
  expect(await pagesOf('users')).toBeGreaterThan(pages * 2);
  expect(rows.sort()).toEqual(before);
  const ranges = rangesOf(copies);
  // Consecutive, from page 0 to the pages counted at the start, none past them.
  expect(ranges[0]![0]).toBe(0);
  for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBe(ranges[i - 1]![1]);
  expect(ranges.at(-1)![1]).toBe(pages);
  await admin.query(`delete from users where id > ${ROWS}`);
  await admin.query('vacuum users'); // empty pages at the end would make later scans' ranges grow
});

test('a scan in the caller\'s transaction needs one snapshot: read committed is refused', async () => {
  const { client } = await session();
  await client.query('begin');
  await expect(pagedCopyOut(client, usersScan(pace(), true), [discard()])).rejects.toThrow(/repeatable read or serializable, not read committed/);
});

test('ranges use TID range scans and no idle timeout even where the session set them otherwise', async () => {
  const u = new URL(url);
  u.searchParams.set('options', '-c enable_tidscan=off -c idle_in_transaction_session_timeout=200');
  const s = await openShardSession(u.toString(), 5000);
  sessions.push(s);
  let seen: { plan: string; idle: string } | undefined;
  await pagedCopyOut(s.client, usersScan(pace(async () => {
    if (seen !== undefined) return;
    // Between ranges the scan's own session is idle: ask it how a range is planned.
    const { rows } = await s.client.query<{ 'QUERY PLAN': string }>(`explain select * from users where ctid >= '(8,0)'::tid and ctid < '(16,0)'::tid`);
    const { rows: [idle] } = await s.client.query<{ t: string }>(`select current_setting('idle_in_transaction_session_timeout') as t`);
    seen = { plan: rows.map((r) => r['QUERY PLAN']).join('\n'), idle: idle!.t };
  })), [discard()]);
  expect(seen?.plan).toMatch(/^Tid Range Scan on users/);
  expect(seen?.idle).toBe('0');
});

/** A TCP proxy to `port` that holds every chunk `delayMillis` in each direction; `close` ends every connection. */
async function slowProxy(port: number, delayMillis: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect(port, '127.0.0.1');
    for (const socket of [up, down]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      // No Nagle: the delay is the proxy's, not delayed ACKs'.
      socket.setNoDelay(true);
    }
    const relay = (from: Socket, to: Socket): void => {
      from.on('data', (chunk) => setTimeout(() => to.write(chunk), delayMillis));
      from.on('close', () => setTimeout(() => to.destroy(), delayMillis));
      from.on('error', () => undefined);
    };
    relay(down, up);
    relay(up, down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test('with a long round trip per statement (10 ms), ranges are sized on the shard\'s work, not the round trip', async () => {
  const proxy = await slowProxy(Number(new URL(url).port), 5);
  try {
    const u = new URL(url);
    u.port = String(proxy.port);
    const s = await openShardSession(u.toString(), 5000);
    sessions.push(s);
    const copies = copiesOf(s.client);
    const rows: string[] = [];
    await pagedCopyOut(s.client, usersScan({ ...pace(), sliceMillis: 10 }), [collect(rows)]);
    expect(rows).toHaveLength(ROWS);
    // 10 ms of round trip against a 10 ms slice: sized on the round trip, every range would be one
    // page. Sized on the work, they grow (timer jitter of a loaded machine counts as work, hence the margin).
    expect(copies.length).toBeLessThan((await pagesOf('users')) / 4);
  } finally {
    await proxy.close();
  }
});

test('an inheritance parent is read by one statement, with its children\'s rows', async () => {
  await admin.query('create table archive (id bigint, note text)');
  await admin.query('create table archive_2020 () inherits (archive)');
  await admin.query(`insert into archive select g, 'parent' from generate_series(1, 100) g`);
  await admin.query(`insert into archive_2020 select g, repeat('child', 20) from generate_series(101, 30100) g`);
  const { client } = await session();
  const rows: string[] = [];
  const copies = copiesOf(client);
  await pagedCopyOut(client, { table: '"archive"', columns: 'id', pace: pace(), inTransaction: false }, [collect(rows)]);
  expect(rows).toHaveLength(30_100);
  expect(copies).toEqual(['copy (select id from "archive" x) to stdout']);
});

/** The system clock, `offset` milliseconds ahead (a test moves it to make a statement look slow, or time pass). */
function offsetClock(): Clock & { offset: number } {
  const clock = {
    offset: 0,
    now: () => Date.now() + clock.offset,
    monotonicNow: () => performance.now() + clock.offset,
    setTimeout: (callback: () => void, millis: number) => systemClock.setTimeout(callback, millis),
  };
  return clock;
}

test('a slow first statement does not inflate the ranges: the fixed cost is the shortest statement seen', async () => {
  const { client } = await session();
  const clock = offsetClock();
  // The scan's first query (the table's pages) seems to take 150 ms more than it does.
  const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
  (client as unknown as { query: unknown }).query = (q: unknown, ...rest: unknown[]) => {
    const result = query(q, ...rest);
    if (typeof q === 'string' && q.includes('pg_relation_size')) return result.then((r) => ((clock.offset += 150), r));
    return result;
  };
  const copies = copiesOf(client);
  await pagedCopyOut(client, usersScan({ ...pace(), clock, sliceMillis: 0.5 }), [discard()]);
  // Taking 150 ms as every statement's fixed cost, each range would look like no work and double.
  const largest = Math.max(...rangesOf(copies).map(([a, b]) => b - a));
  expect(largest).toBeLessThan(32);
});

test('the table\'s lock is waited for at most SCAN_LOCK_TIMEOUT_MILLIS, then a coded error says what holds it', async () => {
  const holder = directClient(url);
  const migration = directClient(url);
  await holder.connect();
  await migration.connect();
  try {
    await holder.query('begin');
    await holder.query('select 1 from users limit 1');
    // A migration queues behind the open transaction, and every later lock request behind it.
    const altered = migration.query('alter table users add column note text');
    await untilWaitingForLock(admin, 'alter table users');
    const { client } = await session();
    const started = performance.now();
    const error = await pagedCopyOut(client, usersScan(pace()), [discard()]).then(() => undefined, (e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_MOVE_FAILED', context: { table: '"users"' } });
    expect((error as Error).message).toMatch(/could not lock it for reading within 5000 ms/);
    expect(performance.now() - started).toBeLessThan(SCAN_LOCK_TIMEOUT_MILLIS + 2000);
    await holder.query('rollback');
    await altered;
    await admin.query('alter table users drop column note');
  } finally {
    await holder.end();
    await migration.end();
  }
});

test('a session queued behind the scan\'s lock ends its pauses: the rest runs at once, so the lock goes soonest', async () => {
  const migration = directClient(url);
  await migration.connect();
  try {
    const { client } = await session();
    const clock = offsetClock();
    let pauses = 0;
    let altered: Promise<unknown> | undefined;
    await pagedCopyOut(client, usersScan({
      ...pace(async () => {
        pauses++;
        if (altered !== undefined) return;
        altered = migration.query('alter table users add column note text');
        await untilWaitingForLock(admin, 'alter table users');
        clock.offset += BLOCKING_CHECK_MILLIS; // the next check is due
      }),
      clock,
    }), [discard()]);
    // One pause (while the migration queued), none after the scan saw it waiting.
    expect(pauses).toBe(1);
    await altered;
    await admin.query('alter table users drop column note');
  } finally {
    await migration.end();
  }
});
