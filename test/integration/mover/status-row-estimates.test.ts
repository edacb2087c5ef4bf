/**
 * `status`'s (and the dashboard's) row figure per shard right after a move, with no ANALYZE in
 * between (autovacuum is off for the tables): `pg_class.reltuples`, which it showed before, is
 * stale on both shards of the move; the figure measured now is right. Its cost is bounded, since a
 * dashboard may ask every few seconds: about `rowSamplePages` pages of a shard's tables read per
 * call, whatever their size (measured with the shard's own block counters); and a table a
 * migration keeps locked neither holds it nor makes the primary look unreachable.
 */
import { liveStatus } from '../../../src/admin/live-status';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { startMoverFixture, seededRowsIn, TABLES, type MoverFixture } from './mover-fixture';
import { eventually } from '../../support/postgres-replication';
import { startTcpProxy } from '../../support/tcp-proxy';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { createTopology } from '../../../src/cluster/topology';
import { MAX_SAMPLED_TABLES, estimateDatabaseRows } from '../../../src/admin/mover/table-estimate';
import { openShardSession } from '../../../src/admin/mover/shard-session';
import { directPool } from '../../support/direct-pool';

const USERS = 20_000;
const SAMPLE_PAGES = 100;
let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('status_estimates', 2);
  for (const pool of f.pools) await pool.query('alter table users set (autovacuum_enabled = false); alter table orders set (autovacuum_enabled = false)');
  await f.seed(await f.init(2), 0, USERS);
  for (const pool of f.pools) await pool.query('analyze users; analyze orders');
}, 150_000);

afterAll(() => f?.close());

/** The rows of every user table on shard `i`, counted, and the statistics' figure (what status showed before). */
async function truth(i: number): Promise<{ rows: number; statistics: number }> {
  const { rows } = await f.pools[i]!.query<{ rows: number; statistics: number }>(
    `select (select count(*) from users) + (select count(*) from orders) + (select count(*) from countries) as rows,
            (select sum(greatest(reltuples, 0)) from pg_class where relname in ('users', 'orders', 'countries') and relkind = 'r')::float8 as statistics`,
  );
  return { rows: Number(rows[0]!.rows), statistics: rows[0]!.statistics };
}

test('right after a move, each shard shows its true rows (counted: its tables are within the budget) where the statistics are over 30% off', async () => {
  const moved = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '0-1023', to: 'shard1', tuning: { niceRatio: 0, cleanupDelayMillis: 0 } });
  expect(moved.error).toBeNull();
  const status = await liveStatus(f.catalogUrl);
  expect(status.problems).toEqual([]);
  const expected = [seededRowsIn('1024-2047', 0, USERS), seededRowsIn('0-1023,2048-4095', 0, USERS)];
  for (const i of [0, 1]) {
    const { rows, statistics } = await truth(i);
    expect(rows).toBe(expected[i]);
    process.stdout.write(`shard${i}: status ${status.shards[i]!.rowEstimate}, true ${rows}, statistics ${statistics}\n`);
    expect(status.shards[i]!.rowEstimate).toBe(rows);
    expect(Math.abs(statistics - rows)).toBeGreaterThan(0.3 * rows); // what status showed before
  }
}, 120_000);

test('a shard larger than rowSamplePages: about that many pages read per call (its own block counters), the figure within 10%', async () => {
  const pool = f.pools[0]!;
  // Wide rows (7 a page), 8 × the budget in pages, half of them deleted and not vacuumed.
  await pool.query('create table wide (id integer primary key, pad text not null) with (autovacuum_enabled = false)');
  await pool.query(`insert into wide select g, repeat('x', 1000) from generate_series(1, ${7 * 8 * SAMPLE_PAGES}) g`);
  await pool.query('delete from wide where id % 2 = 0');
  const counters = async (): Promise<{ pages: number; blocks: number }> => {
    const { rows } = await pool.query<{ pages: number; blocks: number }>(
      `select sum(pg_relation_size(relid) / 8192)::float8 as pages, sum(heap_blks_read + heap_blks_hit)::float8 as blocks from pg_statio_user_tables`,
    );
    return rows[0]!;
  };
  // Settled: the writes above counted (a backend flushes its counts when idle, within a second).
  let before = await counters();
  await eventually('block counters settled', async () => {
    const now = await counters();
    const settled = now.blocks === before.blocks;
    before = now;
    return settled;
  });
  expect(before.pages).toBeGreaterThan(8 * SAMPLE_PAGES);
  const status = await liveStatus(f.catalogUrl, { rowSamplePages: SAMPLE_PAGES });
  // The status's session flushed its counts when it ended.
  let read = 0;
  await eventually('the status session counted', async () => {
    read = (await counters()).blocks - before.blocks;
    return read > 0;
  });
  const { rows } = await truth(0);
  const live = rows + Number((await pool.query<{ n: string }>('select count(*) as n from wide')).rows[0]!.n);
  const estimate = status.shards[0]!.rowEstimate!;
  process.stdout.write(`shard0 of ${before.pages} pages: status read ${read} pages, estimated ${estimate}, true ${live}\n`);
  expect(read).toBeLessThanOrEqual(2 * SAMPLE_PAGES);
  expect(Math.abs(estimate - live)).toBeLessThanOrEqual(0.1 * live);
  await pool.query('drop table wide');
}, 60_000);

test('a table a migration keeps locked: status neither waits for it nor calls the primary unreachable; that table counts by its statistics, the others measured', async () => {
  const { rows: counted } = await f.pools[1]!.query<{ n: number; orders: number }>(
    `select ((select count(*) from users) + (select count(*) from countries))::float8 as n,
            (select greatest(reltuples, 0) from pg_class where oid = 'orders'::regclass)::float8 as orders`,
  );
  const migration = await f.pools[1]!.connect();
  try {
    await migration.query('begin');
    await migration.query('lock table orders in access exclusive mode');
    const started = performance.now();
    const status = await liveStatus(f.catalogUrl, { timeoutMillis: 2000 });
    const millis = performance.now() - started;
    expect(status.problems).toEqual([]);
    expect(status.shards[1]!.servers[0]).toMatchObject({ role: 'primary', reachable: true });
    expect(status.shards[1]!.rowEstimate).toBe(Math.round(counted[0]!.n + counted[0]!.orders));
    expect(status.shards[1]!.rowEstimateSource).toBe('measured');
    expect(millis).toBeLessThan(2000);
  } finally {
    await migration.query('rollback');
    migration.release();
  }
}, 30_000);

test('over a slow link (400 ms round trips) the primary is reachable: its health answered in time, its rows from the statistics when the sample does not finish within timeoutMillis', async () => {
  const { statistics } = await truth(0);
  const proxy = await startTcpProxy(Number(new URL(f.shards[0]!.primaryUrl).port));
  const catalogUrl = (await f.cluster.createDatabase('status_slow_catalog'))[0]!.primaryUrl;
  const viaProxy = new URL(f.shards[0]!.primaryUrl);
  viaProxy.port = String(proxy.port);
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    await catalog.install();
    await catalog.publish(createTopology({ shards: [{ id: 'shard0', primary: viaProxy.toString() }] }), 'init');
    proxy.delayMillis = 200;
    const started = performance.now();
    const status = await liveStatus(catalogUrl, { timeoutMillis: 1000, migrations: false });
    const millis = performance.now() - started;
    process.stdout.write(`slow link: status in ${Math.round(millis)} ms, primary ${JSON.stringify(status.shards[0]!.servers[0])}\n`);
    expect(status.shards[0]!.servers[0]).toMatchObject({ role: 'primary', reachable: true, error: null });
    expect(status.shards[0]!).toMatchObject({ rowEstimate: Math.round(statistics), rowEstimateSource: 'statistics' });
    // Health within timeoutMillis (+ grace), the row figure within as much again.
    expect(millis).toBeLessThan(2 * 1000 + 1000);
  } finally {
    await catalog.close();
    await proxy.close();
  }
}, 60_000);

test('more tables than MAX_SAMPLED_TABLES: the largest are measured, the others counted by their statistics (no lock, no statement branch for them)', async () => {
  const pool = f.pools[0]!;
  const extra = MAX_SAMPLED_TABLES + 9;
  // One-page tables, analysed (their statistics: 10 rows), then 10 rows more each, not analysed.
  for (let i = 0; i < extra; i++) await pool.query(`create table many_${i} (id integer) with (autovacuum_enabled = false); insert into many_${i} select generate_series(1, 10); analyze many_${i}`);
  for (let i = 0; i < extra; i++) await pool.query(`insert into many_${i} select generate_series(11, 20)`);
  try {
    const { rows } = await truth(0);
    // Past the largest MAX_SAMPLED_TABLES (by relpages, then oid): each of those shows its statistics, 10 rows short.
    const { rows: beyond } = await pool.query<{ name: string; statistics: number }>(
      `select c.oid::regclass::text as name, greatest(c.reltuples, 0)::float8 as statistics from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema', 'kysely_scale') and n.nspname not like 'pg\\_%'
        order by c.relpages desc, c.oid offset ${MAX_SAMPLED_TABLES}`,
    );
    expect(beyond.filter((t) => t.name.startsWith('many_')).length).toBeGreaterThanOrEqual(9);
    let short = 0;
    for (const t of beyond) short += Number((await pool.query<{ n: string }>(`select count(*) as n from ${t.name}`)).rows[0]!.n) - t.statistics;
    expect(short).toBeGreaterThanOrEqual(90);
    const status = await liveStatus(f.catalogUrl, { migrations: false });
    expect(status.shards[0]!.rowEstimate).toBe(rows + extra * 20 - short);
    expect(status.shards[0]!.rowEstimateSource).toBe('measured');
  } finally {
    for (let i = 0; i < extra; i++) await pool.query(`drop table many_${i}`);
  }
}, 120_000);

test('live rows left in a cluster by a large delete: 2% at the end of a 5,335-page table is found (500 pages read); a sample that finds none takes n_live_tup', async () => {
  const url = (await f.cluster.createDatabase('status_clustered'))[0]!.primaryUrl;
  const pool = directPool({ connectionString: url, max: 2 });
  const session = await openShardSession(url);
  try {
    // 7 rows a page; all deleted but the last 2%, not vacuumed.
    const total = 7 * 5335;
    const kept = Math.round(total * 0.02);
    await pool.query('create table clustered (id integer primary key, pad text not null) with (autovacuum_enabled = false)');
    await pool.query(`insert into clustered select g, repeat('x', 1000) from generate_series(1, ${total}) g`);
    await pool.query(`delete from clustered where id <= ${total - kept}`);
    const tail = await estimateDatabaseRows(session.client, 500, 200);
    process.stdout.write(`2% tail: estimated ${tail}, true ${kept}\n`);
    expect(Math.abs(tail - kept)).toBeLessThanOrEqual(0.25 * kept);
    // Now only the rows of the first 5 pages: between the sample's ranges (the first starts at page 9).
    await pool.query(`delete from clustered; insert into clustered select g, repeat('x', 1000) from generate_series(1, 35) g`);
    await eventually('n_live_tup counted the writes', async () => (await pool.query<{ n: number }>(`select n_live_tup::int as n from pg_stat_user_tables where relname = 'clustered'`)).rows[0]!.n === 35);
    expect(await estimateDatabaseRows(session.client, 500, 200)).toBe(35);
  } finally {
    await session.close();
    await pool.end();
  }
}, 120_000);

test('a large table never vacuumed nor analysed (relpages 0, reltuples -1) among more than MAX_SAMPLED_TABLES: ranked by its rows, sampled, not counted as empty', async () => {
  const url = (await f.cluster.createDatabase('status_unanalysed'))[0]!.primaryUrl;
  const pool = directPool({ connectionString: url, max: 2 });
  const session = await openShardSession(url);
  try {
    for (let i = 0; i < MAX_SAMPLED_TABLES + 6; i++) await pool.query(`create table small_${i} (id integer); insert into small_${i} select generate_series(1, 10); analyze small_${i}`);
    await pool.query('create table big (id integer primary key, pad text not null) with (autovacuum_enabled = false)');
    await pool.query(`insert into big select g, 'p' from generate_series(1, 200000) g`);
    const { rows } = await pool.query<{ pages: number; reltuples: number }>(`select relpages as pages, reltuples::float8 as reltuples from pg_class where oid = 'big'::regclass`);
    expect(rows[0]).toEqual({ pages: 0, reltuples: -1 });
    await eventually('n_live_tup counted the insert', async () => (await pool.query<{ n: number }>(`select n_live_tup::int as n from pg_stat_user_tables where relname = 'big'`)).rows[0]!.n === 200_000);
    const truth = 200_000 + (MAX_SAMPLED_TABLES + 6) * 10;
    const estimate = await estimateDatabaseRows(session.client, 500, 200);
    process.stdout.write(`never analysed among ${MAX_SAMPLED_TABLES + 7} tables: estimated ${estimate}, true ${truth}\n`);
    expect(Math.abs(estimate - truth)).toBeLessThanOrEqual(0.1 * truth);
  } finally {
    await session.close();
    await pool.end();
  }
}, 120_000);
