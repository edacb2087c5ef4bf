import Redis from 'ioredis';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { L2_CONNECTION_NAME, closeRedisClients } from '../../../src/cache/redis-client';
import { clusterRedisTier } from '../../../src/cache/redis-cluster-tier';
import { ringRedisTier } from '../../../src/cache/redis-ring-tier';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { connect } from './cache-fixtures';

/** An L2 tier's close() ends the connections it opened itself and never a client it was given. Real Redis. */
let cluster: TestCluster;
const clients: Redis[] = [];
/** One plain connection per server, to ask it which clients are connected. */
const observers = new Map<string, Redis>();

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 0, redis: { standalone: 2, clusterMasters: 3 } });
});
afterAll(async () => {
  await closeRedisClients([...clients, ...observers.values()]);
  await cluster?.stop();
});

async function observer(host: string, port: number): Promise<Redis> {
  const id = `${host}:${port}`;
  let o = observers.get(id);
  if (o === undefined) {
    o = new Redis({ host, port, lazyConnect: true });
    await o.connect();
    observers.set(id, o);
  }
  return o;
}

/** Connections the L2 tiers opened themselves (named {@link L2_CONNECTION_NAME}) on one server. */
async function tierConnections(host: string, port: number): Promise<number> {
  const list = (await (await observer(host, port)).call('CLIENT', 'LIST')) as string;
  return list.split('\n').filter((line) => line.includes(` name=${L2_CONNECTION_NAME} `)).length;
}

const hostPort = (url: string): [string, number] => {
  const u = new URL(url);
  return [u.hostname, Number(u.port)];
};

it('a single-server tier made from a url ends its connection when the cache closes', async () => {
  const [host, port] = hostPort(cluster.redis[0]!.url);
  const cache = new TieredCache({ policies: { p: {} }, l2: singleRedisTier({ url: cluster.redis[0]!.url, prefix: 'close-single:' }) });
  expect(await cache.getOrLoad('p', 'k', async () => 'v')).toBe('v');
  expect(cache.stats().policies.p!.l2.writes).toBe(1); // the tier's own connection answered
  expect(await tierConnections(host, port)).toBe(1);
  await cache.close();
  expect(await tierConnections(host, port)).toBe(0);
});

it('a tier given a client leaves it open on close()', async () => {
  const given = await connect(cluster.redis[0]!.url);
  clients.push(given);
  const tier = singleRedisTier({ client: given, prefix: 'close-given:' });
  await tier.write('p:k', 'x', 60_000);
  await tier.close();
  expect(given.status).toBe('ready');
  expect(await given.get('close-given:{p:k}')).toBe('x');
});

it('a ring ends the connections it opened from urls and keeps the client it was given', async () => {
  const [host0, port0] = hostPort(cluster.redis[0]!.url);
  const given = await connect(cluster.redis[1]!.url);
  clients.push(given);
  const tier = ringRedisTier({
    servers: [
      { id: 'a', url: cluster.redis[0]!.url },
      { id: 'b', client: given },
    ],
    prefix: 'close-ring:',
  });
  await tier.clear(); // reaches both servers
  await tier.invalidate(Array.from({ length: 20 }, (_, i) => `p:k${i}`));
  expect(tier.health()).toEqual({ a: 'closed', b: 'closed' });
  expect(await tierConnections(host0, port0)).toBe(1);
  await tier.close();
  expect(await tierConnections(host0, port0)).toBe(0);
  expect(given.status).toBe('ready');
  expect(await given.ping()).toBe('PONG');
});

it('a cluster tier made from seed nodes ends every node connection on close()', async () => {
  const seeds = cluster.redisClusterNodes;
  const count = async (): Promise<number> => (await Promise.all(seeds.map((s) => tierConnections(s.host, s.port)))).reduce((a, b) => a + b, 0);
  const tier = clusterRedisTier({ nodes: seeds, prefix: 'close-cluster:' });
  await tier.clear(); // SCAN on every master
  await Promise.all(Array.from({ length: 30 }, (_, i) => tier.write(`p:k${i}`, 'v', 60_000)));
  expect(await count()).toBeGreaterThanOrEqual(seeds.length);
  await tier.close();
  expect(await count()).toBe(0);
});

it('a tier made from a url whose server refuses connections: reads fall through to the loader, close() returns, and later calls fail fast', async () => {
  // Port 1 on loopback: nothing listens there, so every connection attempt is refused at once.
  const tier = singleRedisTier({ url: 'redis://127.0.0.1:1', prefix: 'close-down:' });
  const cache = new TieredCache({ policies: { p: {} }, l2: tier });
  expect(await cache.getOrLoad('p', 'k', async () => 'from-loader')).toBe('from-loader');
  expect(cache.stats().policies.p!.l2.errors).toBeGreaterThan(0);
  await cache.close();
  await expect(tier.get('p:k')).rejects.toMatchObject({ code: 'E_CACHE_BACKEND_UNAVAILABLE' });
});
