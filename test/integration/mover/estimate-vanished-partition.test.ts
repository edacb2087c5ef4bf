/**
 * Review 51, finding 3: a move plan's paced estimate reads each range in a transaction of its own
 * and holds no lock between ranges (110f694), so a partition may be dropped (a retention job),
 * renamed, or renamed with a new table taking its name between two ranges. Before, the ranges
 * named the partition by its name as read at the start: a dropped or renamed one failed the plan
 * with a raw 42P01, and a swapped one was silently counted as the new table. The estimate follows
 * each partition by its oid: a renamed one is read under its new name, a dropped one counts no row
 * (its rows are gone), a table that only took its name is not counted. The tables are smaller than
 * the sample, so every count is exact.
 */
import type { Pool } from 'pg';
import { directPool } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession } from '../../../src/admin/mover/shard-session';
import { RANGE_PAGES, estimateTableRows } from '../../../src/admin/mover/table-estimate';
import { systemClock, type Clock } from '../../../src/kernel/clock';

/** Rows of each partition (7 rows of 1 kB a page: two ranges of RANGE_PAGES pages each). */
const ROWS = 7 * 2 * RANGE_PAGES;
let cluster: TestCluster;
let pool: Pool;
let url: string;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('estimate_vanished');
  url = shard!.primaryUrl;
  pool = directPool({ connectionString: url, max: 2 });
}, 60_000);

afterAll(async () => {
  await pool?.end();
  await cluster?.stop();
});

/** The paced estimate of `events`, `change` run at its first pause (after the first range of events_1, the leaf read first). */
async function estimateChangedAtFirstPause(change: string): Promise<number> {
  await pool.query('drop table if exists events, events_renamed, events_2_old, events_2 cascade');
  await pool.query('create table events (id integer not null, pad text not null) partition by range (id)');
  await pool.query('create table events_1 partition of events for values from (0) to (100000)');
  await pool.query('create table events_2 partition of events for values from (100000) to (200000)');
  await pool.query(`insert into events select g, repeat('x', 1000) from generate_series(1, ${ROWS}) g`);
  await pool.query(`insert into events select 100000 + g, repeat('x', 1000) from generate_series(1, ${ROWS}) g`);
  let changed = false;
  const clock: Clock = {
    ...systemClock,
    setTimeout: (callback) => {
      const pause = changed ? Promise.resolve() : pool.query(change);
      changed = true;
      void pause.then(callback, callback);
      return () => undefined;
    },
  };
  const session = await openShardSession(url);
  try {
    return await estimateTableRows(session.client, 'events', { clock, niceRatio: 1, sliceMillis: 3, probeSlowMillis: 0 });
  } finally {
    await session.close();
  }
}

test('a partition dropped between two ranges counts no row; the estimate answers', async () => {
  expect(await estimateChangedAtFirstPause('drop table events_2')).toBe(ROWS);
});

test('a partition renamed between two ranges is read under its new name', async () => {
  expect(await estimateChangedAtFirstPause('alter table events_2 rename to events_2_old')).toBe(2 * ROWS);
});

test('a partition renamed and its name taken by a new table: the partition is counted, not the new table', async () => {
  const swap = `alter table events_2 rename to events_2_old; create table events_2 (id integer not null, pad text not null); insert into events_2 values (1, 'a'), (2, 'b'), (3, 'c')`;
  expect(await estimateChangedAtFirstPause(swap)).toBe(2 * ROWS);
});

test('a partition detached between two ranges counts no row', async () => {
  expect(await estimateChangedAtFirstPause('alter table events detach partition events_2')).toBe(ROWS);
});

test('a partition being detached concurrently (pending: queries of the table no longer read it) is not counted', async () => {
  await estimateChangedAtFirstPause('select 1'); // the two partitions, filled
  // An open transaction that read the table makes DETACH … CONCURRENTLY wait in its second phase, the partition marked pending.
  const blocker = await pool.connect();
  const detacher = await pool.connect();
  const session = await openShardSession(url);
  try {
    await blocker.query('begin isolation level repeatable read');
    await blocker.query('select count(*) from events');
    const detach = detacher.query('alter table events detach partition events_2 concurrently');
    const pending = async (): Promise<boolean> =>
      (await session.client.query<{ p: boolean }>(`select coalesce((select inhdetachpending from pg_inherits where inhrelid = 'events_2'::regclass), false) as p`)).rows[0]!.p;
    // Its first phase commits at once: looked for by its effect (each look a round trip), not waited for by time.
    for (let i = 0; i < 500 && !(await pending()); i++);
    expect(await pending()).toBe(true);
    expect(await estimateTableRows(session.client, 'events')).toBe(ROWS);
    expect(await estimateTableRows(session.client, 'events', { clock: systemClock, niceRatio: 0, sliceMillis: 3, probeSlowMillis: 0 })).toBe(ROWS);
    await blocker.query('commit');
    await detach;
  } finally {
    await session.close();
    blocker.release();
    detacher.release();
  }
});

test('the table itself renamed between two ranges (review 66): its tree is followed by its oid, as its partitions are, so every row counts', async () => {
  expect(await estimateChangedAtFirstPause('alter table events rename to events_renamed')).toBe(2 * ROWS);
  await pool.query('alter table events_renamed rename to events');
});
