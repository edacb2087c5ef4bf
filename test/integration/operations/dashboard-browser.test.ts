/**
 * The dashboard in a real headless browser (Debian's chromium through puppeteer-core) against a
 * running cluster: two shards with a streaming replica each, a catalog, Redis, and an app
 * instance publishing its stats (statements, a cache, a balancer). The page shows every shard and
 * server, the cache and balancer panels; it updates when a replica is stopped and when slots move;
 * a screenshot is written to test/artifacts/dashboard.png. No password reaches the page or its API.
 *
 * Skipped, saying so, only where chromium is not installed (`apt-get install chromium`).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely } from 'kysely';
import type { Browser } from 'puppeteer-core';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { SLOT_FUNCTIONS_SQL } from '../../../src/cluster/slot-function-sql';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { moveSlots } from '../../../src/admin/mover';
import { startDashboard, type RunningDashboard } from '../../../src/admin/dashboard/dashboard-server';
import { TieredCache, publishInstanceStats, type InstanceStatsPublisher } from '../../../src/cache';
import { Balancer, roundRobin } from '../../../src/balancer';
import { SECRET, withPassword } from '../admin/admin-cli-process';
import { directPool } from '../../support/direct-pool';

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p !== undefined && p !== '' && existsSync(p));
const artifacts = join(__dirname, '../../artifacts');

interface DB {
  users: { id: number; name: string };
}

if (CHROMIUM === undefined) {
  // eslint-disable-next-line no-console
  console.warn('dashboard browser test skipped: chromium is not installed (apt-get install -y chromium, or set CHROMIUM_PATH)');
}
const withChromium = CHROMIUM === undefined ? describe.skip : describe;

withChromium('the dashboard in a headless browser', () => {
  let cluster: TestCluster;
  let shards: readonly TestShardUrls[];
  let catalogUrl: string;
  let dashboard: RunningDashboard;
  let browser: Browser;
  let db: Kysely<DB>;
  let cache: TieredCache;
  let publisher: InstanceStatsPublisher;

  beforeAll(async () => {
    cluster = await startTestCluster({ shards: 2, replicasPerShard: 1, redis: true });
    shards = await cluster.createDatabase('dashboard');
    const [catalogShard] = await cluster.createDatabase('dashboard_catalog');
    catalogUrl = withPassword(catalogShard!.primaryUrl);
    for (const s of shards) {
      const pool = directPool({ connectionString: s.primaryUrl });
      await pool.query('create table users (id bigint primary key, name text not null)');
      await pool.query(SLOT_FUNCTIONS_SQL);
      await pool.end();
    }
    const topology = createTopology({ shards: shards.map((s) => ({ id: s.id, primary: withPassword(s.primaryUrl), replicas: s.replicaUrls.map(withPassword) })) });
    const catalog = new TopologyCatalog({ url: catalogUrl });
    await catalog.install();
    await catalog.publish(topology, 'init');
    await catalog.close();

    // An app instance: statements, a cache and a balancer, publishing its stats to Redis.
    db = new Kysely<DB>({ dialect: new ShardedDialect({ topology, shardKeys: { users: 'id' }, defaultKeylessPolicy: 'scatter' }) });
    await db.insertInto('users').values(Array.from({ length: 200 }, (_, i) => ({ id: i + 1, name: `user ${i + 1}` }))).execute();
    cache = new TieredCache({ policies: { profiles: { levels: ['l1'], ttlMillis: 60_000 } } });
    for (let i = 0; i < 20; i++) await cache.getOrLoad('profiles', `p:${i % 5}`, async () => i);
    const balancer = new Balancer({ strategy: roundRobin(), instances: [{ id: 'svc-a', address: `http://svc:${SECRET}@10.0.0.1` }, { id: 'svc-b', address: 'http://10.0.0.2' }] });
    for (let i = 0; i < 10; i++) await balancer.run(async () => 'ok');
    publisher = publishInstanceStats({ redis: cluster.redis[0]!.url, instance: 'app-1', cache, balancer, intervalMillis: 200 });
    await publisher.publishNow();

    dashboard = await startDashboard({ catalog: catalogUrl, redis: cluster.redis[0]!.url, intervalMillis: 300, timeoutMillis: 1000 });
    const puppeteer = await import('puppeteer-core');
    browser = await puppeteer.launch({ executablePath: CHROMIUM!, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await publisher?.stop();
    await cache?.close();
    await db?.destroy();
    await cluster?.stop();
  });

  it('shows every shard, server, the cache and the balancer; updates on a stopped replica and a slot move', async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 1300 });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(dashboard.url, { waitUntil: 'load' });
    // Browser-side code is given as text: the test's TypeScript has no DOM types.
    const inPage = <T>(expression: string): Promise<T> => page.evaluate(expression) as Promise<T>;
    const waitFor = (expression: string, timeout: number): Promise<unknown> => page.waitForFunction(expression, { timeout });
    await waitFor(`document.querySelectorAll('#shards tbody tr').length === 4`, 15_000);
    const rows = await inPage<string[][]>(`[...document.querySelectorAll('#shards tbody tr')].map((tr) => [tr.dataset.shard, tr.dataset.role, tr.dataset.reachable])`);
    expect(rows).toEqual([
      [shards[0]!.id, 'primary', 'true'],
      [shards[0]!.id, 'replica', 'true'],
      [shards[1]!.id, 'primary', 'true'],
      [shards[1]!.id, 'replica', 'true'],
    ]);
    const segments = await inPage<string[]>(`[...document.querySelectorAll('#slot-map div')].map((d) => d.dataset.shard + ':' + d.dataset.slots)`);
    expect(segments).toEqual([`${shards[0]!.id}:0-2047`, `${shards[1]!.id}:2048-4095`]);
    await waitFor(`document.querySelector('#cache tbody').textContent.includes('profiles')`, 10_000);
    expect(await inPage<string>(`document.querySelector('#cache tbody').textContent`)).toContain('75.0%'); // 15 of 20 reads hit L1
    const balancerText = await inPage<string>(`document.querySelector('#balancer tbody').textContent`);
    expect(balancerText).toContain('svc-a');
    expect(balancerText).toContain('healthy');
    expect(await page.$$('#chart-traffic .uplot')).toHaveLength(1); // uPlot drew the chart

    // A replica stops: the page marks it unreachable.
    await cluster.shards[1]!.replicas[0]!.stop();
    try {
      await waitFor(`document.querySelector('#shards tr[data-shard="${shards[1]!.id}"][data-role="replica"]').dataset.reachable === 'false'`, 20_000);
      expect(await inPage<string>(`document.querySelector('#problems').textContent`)).toMatch(/replica .* is unreachable/);
    } finally {
      await cluster.shards[1]!.replicas[0]!.start();
    }

    // Slots move: the slot map follows.
    const moved = await moveSlots({ catalog: catalogUrl, tables: { users: 'id' }, slots: '0-99', to: shards[1]!.id });
    expect(moved.ok).toBe(true);
    await waitFor(`[...document.querySelectorAll('#slot-map div')].some((d) => d.dataset.shard === '${shards[1]!.id}' && d.dataset.slots === '0-99')`, 20_000);
    await waitFor(`document.querySelectorAll('#shards tbody tr[data-reachable="false"]').length === 0`, 20_000);

    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true });
    expect(existsSync(join(artifacts, 'dashboard.png'))).toBe(true);

    const html = await page.content();
    const api = await (await fetch(new URL('api/snapshot', dashboard.url))).text();
    expect(html).not.toContain(SECRET);
    expect(api).not.toContain(SECRET);
    expect(api).toContain(':***@');
    expect(errors).toEqual([]);
  }, 120_000);
});

describe('dashboard access', () => {
  it('refuses to listen beyond loopback without a token, and asks every client for the token when one is set', async () => {
    await expect(startDashboard({ catalog: 'postgres://u@127.0.0.1:1/none', host: '0.0.0.0' })).rejects.toThrow(/`token`: is required to listen on 0\.0\.0\.0/);
    const guarded = await startDashboard({ catalog: 'postgres://u@127.0.0.1:1/none', token: 'correct-horse-battery', intervalMillis: 100_000, timeoutMillis: 200 });
    try {
      const base = new URL(guarded.url);
      expect(base.searchParams.get('token')).toBe('correct-horse-battery');
      const bare = `${base.origin}/api/snapshot`;
      expect((await fetch(bare)).status).toBe(401);
      expect((await fetch(`${bare}?token=wrong-horse-battery!`)).status).toBe(401);
      const ok = await fetch(bare, { headers: { authorization: 'Bearer correct-horse-battery' } });
      expect(ok.status).toBe(200);
      // The catalog does not answer: the snapshot says so, within the deadline.
      const snapshot = (await ok.json()) as { status: { error: string | null } };
      expect(snapshot.status.error).toMatch(/ECONNREFUSED|did not answer/);
    } finally {
      await guarded.close();
    }
  }, 30_000);
});
