import { existsSync } from 'node:fs';
import Redis from 'ioredis';
import { startTestCluster, type TestCluster, type TestServer } from '../../src/testing';
import { alive } from '../support/process-alive';
import { eventually, waitForReplay, withPg } from '../support/postgres-replication';

function everyServer(cluster: TestCluster): TestServer[] {
  return [...cluster.shards.flatMap((s) => [s.primary, ...s.replicas]), ...cluster.redis];
}

describe('startTestCluster (local processes)', () => {
  let cluster: TestCluster;
  let startMillis = 0;

  beforeAll(async () => {
    const started = Date.now();
    cluster = await startTestCluster({ shards: 2, replicasPerShard: 1, redis: true });
    startMillis = Date.now() - started;
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  test('starts 2 shards x (primary + replica) and Redis in under 10 seconds', () => {
    // eslint-disable-next-line no-console
    console.log(`test cluster started in ${startMillis} ms (backend ${cluster.backend})`);
    expect(cluster.backend).toBe('local');
    expect(startMillis).toBeLessThan(10_000);
    expect(cluster.shards.map((s) => s.id)).toEqual(['shard0', 'shard1']);
    const urls = everyServer(cluster).map((s) => s.url);
    expect(new Set(urls).size).toBe(urls.length);
    for (const shard of cluster.shards) {
      expect(shard.primary.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
      expect(shard.replicas).toHaveLength(1);
    }
    expect(cluster.redis[0]?.url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect(cluster.redisClusterNodes).toEqual([]);
    for (const server of everyServer(cluster)) {
      expect(server.running).toBe(true);
      expect(server.pid).toEqual(expect.any(Number));
    }
  });

  test('replicas are real streaming replicas of their own primary', async () => {
    for (const shard of cluster.shards) {
      const replica = shard.replicas[0]!;
      const streaming = await withPg(shard.primary.url, async (c) => {
        await c.query('CREATE TABLE marks (shard text)');
        await c.query('INSERT INTO marks VALUES ($1)', [shard.id]);
        return (await c.query("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")).rows;
      });
      expect(streaming).toEqual([{ application_name: `${shard.id}-replica1` }]);
      await waitForReplay(shard.primary.url, replica.url);
      const onReplica = await withPg(replica.url, async (c) => ({
        recovery: (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r,
        rows: (await c.query('SELECT shard FROM marks')).rows,
      }));
      expect(onReplica).toEqual({ recovery: true, rows: [{ shard: shard.id }] });
      await expect(withPg(replica.url, (c) => c.query("INSERT INTO marks VALUES ('x')"))).rejects.toThrow(/read-only/);
    }
  });

  test('Redis answers PING', async () => {
    const redis = new Redis(cluster.redis[0]!.url, { lazyConnect: true });
    try {
      await redis.connect();
      expect(await redis.ping()).toBe('PONG');
    } finally {
      redis.disconnect();
    }
  });

  test('a stopped and restarted Redis keeps its port and data', async () => {
    const server = cluster.redis[0]!;
    const { port, url } = server;
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    redis.on('error', () => undefined);
    await redis.connect();
    await redis.set('survives', 'restart');
    redis.disconnect();

    await server.stop();
    expect(server.running).toBe(false);
    expect(server.pid).toBeUndefined();
    const refused = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    refused.on('error', () => undefined);
    await expect(refused.connect()).rejects.toThrow();
    refused.disconnect();

    await server.start();
    expect(server.running).toBe(true);
    expect(server.port).toBe(port);
    expect(server.url).toBe(url);
    const again = new Redis(url, { lazyConnect: true });
    try {
      await again.connect();
      expect(await again.get('survives')).toBe('restart');
    } finally {
      again.disconnect();
    }
  });

  test('a stopped and restarted primary keeps its port and data, and its replica streams again', async () => {
    const shard = cluster.shards[1]!;
    const primary = shard.primary;
    const { port, url } = primary;
    await withPg(url, (c) => c.query("INSERT INTO marks VALUES ('before-restart')"));

    await primary.stop();
    expect(primary.running).toBe(false);
    await expect(withPg(url, (c) => c.query('SELECT 1'))).rejects.toThrow();

    await primary.start();
    expect(primary.port).toBe(port);
    const rows = await withPg(url, async (c) => (await c.query('SELECT shard FROM marks ORDER BY shard')).rows);
    expect(rows).toEqual([{ shard: 'before-restart' }, { shard: 'shard1' }]);

    await withPg(url, (c) => c.query("INSERT INTO marks VALUES ('after-restart')"));
    await eventually('the replica to stream again', () =>
      withPg(url, async (c) => (await c.query("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'")).rowCount === 1),
    );
    await waitForReplay(url, shard.replicas[0]!.url);
    const onReplica = await withPg(shard.replicas[0]!.url, async (c) => (await c.query("SELECT count(*)::int AS n FROM marks WHERE shard LIKE '%restart'")).rows[0].n);
    expect(onReplica).toBe(2);
  });

  test('createDatabase creates the database on every primary and resolves once replicas have it', async () => {
    const urls = await cluster.createDatabase('tc_orders');
    expect(urls.map((u) => u.id)).toEqual(['shard0', 'shard1']);
    for (const [i, shard] of urls.entries()) {
      expect(shard.primaryUrl).toBe(`postgres://postgres@127.0.0.1:${cluster.shards[i]!.primary.port}/tc_orders`);
      // The replica has the database as soon as the promise resolves: no wait here.
      const replicaDb = await withPg(shard.replicaUrls[0]!, async (c) => (await c.query('SELECT current_database() AS d')).rows[0].d);
      expect(replicaDb).toBe('tc_orders');
      await withPg(shard.primaryUrl, async (c) => {
        await c.query('CREATE TABLE orders (id int PRIMARY KEY)');
        await c.query('INSERT INTO orders VALUES (1), (2)');
      });
      await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
      const count = await withPg(shard.replicaUrls[0]!, async (c) => (await c.query('SELECT count(*)::int AS n FROM orders')).rows[0].n);
      expect(count).toBe(2);
    }
    await expect(cluster.createDatabase('Bad-Name')).rejects.toMatchObject({ code: 'E_INVALID_CONFIG' });
  });

  test('a stopped replica catches up with writes made meanwhile once started again', async () => {
    const shard = cluster.shards[0]!;
    const replica = shard.replicas[0]!;
    await replica.stop();
    expect(replica.running).toBe(false);
    await withPg(shard.primary.url, (c) => c.query("INSERT INTO marks VALUES ('while-replica-down')"));
    // createDatabase does not wait for a replica that is down; it gets the database on restart.
    const [urls] = await cluster.createDatabase('tc_while_down');
    await replica.start();
    await waitForReplay(shard.primary.url, replica.url);
    const rows = await withPg(replica.url, async (c) => (await c.query("SELECT shard FROM marks WHERE shard = 'while-replica-down'")).rows);
    expect(rows).toHaveLength(1);
    const db = await withPg(urls!.replicaUrls[0]!, async (c) => (await c.query('SELECT current_database() AS d')).rows[0].d);
    expect(db).toBe('tc_while_down');
  });

  test('stop() ends every process and removes the temp folder; a second stop() is harmless', async () => {
    const pids = everyServer(cluster).map((s) => s.pid!);
    const tempDir = cluster.tempDir!;
    expect(existsSync(tempDir)).toBe(true);
    expect(pids.every(alive)).toBe(true);
    await cluster.stop();
    expect(existsSync(tempDir)).toBe(false);
    expect(pids.filter(alive)).toEqual([]);
    for (const server of everyServer(cluster)) expect(server.running).toBe(false);
    await expect(cluster.stop()).resolves.toBeUndefined();
  });
});
