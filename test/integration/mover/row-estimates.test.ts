/**
 * A plan's row estimates right after a move, with no ANALYZE in between (autovacuum is off for the
 * tables, so nothing refreshes their statistics behind the test's back): the move copied rows into
 * its target and deleted them from its source, so `pg_class.reltuples` is stale on both (the old
 * estimate was off by -33% on the target and +100% on the source here). Each plan must be within
 * 10% of the true count; and before the tables were ever analysed (`reltuples` -1) too. A table
 * larger than the sample (a quarter of its pages read) is estimated within 10% after half its
 * rows were deleted (their pages stay until a vacuum).
 */
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { openShardSession } from '../../../src/admin/mover/shard-session';
import { ESTIMATE_LOCK_TIMEOUT_MILLIS, RANGE_PAGES, SAMPLE_PAGES, estimateTableRows, type EstimateQueries } from '../../../src/admin/mover/table-estimate';
import { systemClock, type Clock } from '../../../src/kernel/clock';
import { seededRowsIn, startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';

const USERS = 40_000;
const TOLERANCE = 0.1;
let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_estimates', 2);
  for (const pool of f.pools) await pool.query('alter table users set (autovacuum_enabled = false); alter table orders set (autovacuum_enabled = false)');
  await f.seed(await f.init(2), 0, USERS);
}, 150_000);

afterAll(() => f?.close());

const trueRows = (slots: string): number => seededRowsIn(slots, 0, USERS);

async function planned(slots: string, to: string): Promise<number> {
  const plan = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots, to, dryRun: true });
  expect(plan.error).toBeNull();
  return plan.plan!.estimatedRows;
}

function expectWithinTolerance(what: string, estimated: number, actual: number): void {
  process.stdout.write(`${what}: estimated ${estimated}, true ${actual} (${(((estimated - actual) / actual) * 100).toFixed(1)}%)\n`);
  expect(Math.abs(estimated - actual)).toBeLessThanOrEqual(TOLERANCE * actual);
}

test('never analysed (no statistics at all): the estimate is right', async () => {
  const { rows } = await f.pools[0]!.query<{ n: number }>(`select reltuples::float8 as n from pg_class where oid = 'users'::regclass`);
  expect(rows[0]!.n).toBe(-1);
  expectWithinTolerance('never analysed', await planned('0-511', 'shard1'), trueRows('0-511'));
}, 60_000);

test('right after a move, the plans of its grown target and of its cleaned source are within 10% of the true counts', async () => {
  for (const pool of f.pools) await pool.query('analyze users; analyze orders');
  const statistics = async (): Promise<number[]> =>
    Promise.all(f.pools.map(async (pool) => (await pool.query<{ n: number }>(`select sum(reltuples)::float8 as n from pg_class where oid in ('users'::regclass, 'orders'::regclass)`)).rows[0]!.n));
  const analysed = await statistics();
  const moved = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '0-1023', to: 'shard1', tuning: { niceRatio: 0, cleanupDelayMillis: 0 } });
  expect(moved.error).toBeNull();
  // No ANALYZE since: shard1 holds half again as many rows as its statistics say, shard0 half as many.
  expect(await statistics()).toEqual(analysed);
  expectWithinTolerance('grown target (shard1)', await planned('2048-2559', 'shard0'), trueRows('2048-2559'));
  expectWithinTolerance('cleaned source (shard0)', await planned('1024-1535', 'shard1'), trueRows('1024-1535'));
}, 120_000);

test('a table larger than the sample, half of its rows deleted and not vacuumed: the sampled estimate is within 10%', async () => {
  const pool = f.pools[0]!;
  // Wide rows: 7 a page, so 4 × SAMPLE_PAGES pages.
  await pool.query('create table wide (id integer primary key, pad text not null) with (autovacuum_enabled = false)');
  await pool.query(`insert into wide select g, repeat('x', 1000) from generate_series(1, ${7 * 4 * SAMPLE_PAGES}) g`);
  await pool.query('analyze wide');
  await pool.query('delete from wide where id % 2 = 0');
  const { rows } = await pool.query<{ pages: number; live: number; reltuples: number }>(
    `select (pg_relation_size('wide') / 8192)::int as pages, (select count(*)::int from wide) as live, reltuples::float8 as reltuples from pg_class where oid = 'wide'::regclass`,
  );
  expect(rows[0]!.pages).toBeGreaterThan(3 * SAMPLE_PAGES);
  expect(rows[0]!.reltuples).toBeGreaterThan(1.9 * rows[0]!.live); // the statistics still count the deleted rows
  const session = await openShardSession(f.shards[0]!.primaryUrl);
  try {
    const unpaced = await estimateTableRows(session.client, 'wide');
    expectWithinTolerance('sampled table', unpaced, rows[0]!.live);
    // Paced as a move's plan reads it: the same pages, so the same figure.
    expect((await pacedEstimate(session.client, 'wide')).rows).toBe(unpaced);
  } finally {
    await session.close();
  }
}, 60_000);

/**
 * A move plan's estimate of `table`: its counting statements and the pauses asked for after each,
 * recorded; at each pause, `duringPause` runs before the estimate goes on.
 */
async function pacedEstimate(client: EstimateQueries, table: string, duringPause: () => Promise<void> = async () => undefined): Promise<{ rows: number; counts: string[]; pauses: number[] }> {
  const counts: string[] = [];
  const pauses: number[] = [];
  const recording: EstimateQueries = {
    query: (text, values) => {
      if (text.includes('select count(*)')) counts.push(text);
      return client.query(text, values);
    },
  };
  const clock: Clock = {
    ...systemClock,
    setTimeout: (callback, millis) => {
      pauses.push(millis);
      void duringPause().then(callback, callback);
      return () => undefined;
    },
  };
  const rows = await estimateTableRows(recording, table, { clock, niceRatio: 1, sliceMillis: 3, probeSlowMillis: 0 });
  return { rows, counts, pauses };
}

test('a move plan reads paced: at most RANGE_PAGES pages a statement, each followed by a pause as long as it took; the count is exact', async () => {
  const pool = f.pools[1]!;
  // More pages than a range, fewer than the sample budget: counted whole, in ranges.
  await pool.query('create table counted (id integer primary key, pad text not null) with (autovacuum_enabled = false)');
  await pool.query(`insert into counted select g, repeat('x', 1000) from generate_series(1, ${7 * 3 * RANGE_PAGES + 5}) g`);
  const { rows } = await pool.query<{ pages: number }>(`select (pg_relation_size('counted') / 8192)::int as pages`);
  const session = await openShardSession(f.shards[1]!.primaryUrl);
  try {
    // No lock of the estimate's is held while it pauses: a migration queued behind one would queue the app's writes.
    const locksInPauses: number[] = [];
    const locksHeld = async (): Promise<void> => {
      const { rows: held } = await pool.query<{ n: number }>(`select count(*)::int as n from pg_locks where pid = $1 and relation = 'counted'::regclass`, [(session.client as unknown as { processID: number }).processID]);
      locksInPauses.push(held[0]!.n);
    };
    const paced = await pacedEstimate(session.client, 'counted', locksHeld);
    expect(locksInPauses.length).toBe(paced.pauses.length);
    expect(locksInPauses.every((n) => n === 0)).toBe(true);
    expect(paced.rows).toBe(7 * 3 * RANGE_PAGES + 5);
    expect(paced.counts).toHaveLength(Math.ceil(rows[0]!.pages / RANGE_PAGES));
    expect(paced.pauses).toHaveLength(paced.counts.length);
    expect(paced.pauses.every((millis) => millis > 0)).toBe(true);
    // Each statement reads one range of at most RANGE_PAGES pages.
    const SPAN = new RegExp(`ctid >= '\\((\\d+),0\\)'::tid(?: and ctid < '\\((\\d+),0\\)'::tid)?`);
    for (const text of paced.counts) {
      const m = SPAN.exec(text);
      expect(m).not.toBeNull();
      if (m![2] !== undefined) expect(Number(m![2]) - Number(m![1])).toBeLessThanOrEqual(RANGE_PAGES);
      else expect(rows[0]!.pages - Number(m![1])).toBeLessThanOrEqual(RANGE_PAGES);
    }
  } finally {
    await session.close();
  }
}, 60_000);

test('a table locked by a migration: the estimate waits at most ESTIMATE_LOCK_TIMEOUT_MILLIS, then gives the statistics as they are', async () => {
  const pool = f.pools[1]!;
  const { rows } = await pool.query<{ n: number }>(`select reltuples::float8 as n from pg_class where oid = 'users'::regclass`);
  const migration = await pool.connect();
  const session = await openShardSession(f.shards[1]!.primaryUrl);
  try {
    await migration.query('begin');
    await migration.query('lock table users in access exclusive mode');
    const started = performance.now();
    expect(await estimateTableRows(session.client, 'users')).toBe(Math.round(rows[0]!.n));
    expect(performance.now() - started).toBeLessThan(ESTIMATE_LOCK_TIMEOUT_MILLIS + 2000);
  } finally {
    await migration.query('rollback');
    migration.release();
    await session.close();
  }
}, 30_000);
