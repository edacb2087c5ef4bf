import Redis from 'ioredis';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { ErrorCodes } from '../../../src/kernel/errors';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { closeRedisClients, redisClientDefaults, redisSubscriberDefaults } from '../../../src/cache/redis-client';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { nextEvent } from './cache-fixtures';

/** A service boots while Redis is down (the real server stopped), then Redis starts. */
let cluster: TestCluster;
const clients: Redis[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 0, redis: { standalone: 1 } });
});
afterAll(async () => {
  await closeRedisClients(clients);
  await cluster?.stop();
});

function clientsOf(url: string): { data: Redis; sub: Redis } {
  // Created as a service would: not connected first; ioredis keeps reconnecting by itself.
  const data = new Redis(url, redisClientDefaults);
  const sub = new Redis(url, redisSubscriberDefaults);
  for (const c of [data, sub]) c.on('error', () => {});
  clients.push(data, sub);
  return { data, sub };
}

it('bus.start() resolves while Redis is down, the cache serves loads, and the bus connects by itself once Redis answers', async () => {
  const server = cluster.redis[0]!;
  await server.stop();
  const { data, sub } = clientsOf(server.url);
  const bus = new InvalidationBus({ publisher: data, subscriber: sub, channel: 'boot:bus', connectTimeoutMillis: 300 });
  await expect(bus.start()).resolves.toBeUndefined(); // was: E_INVALID_CONFIG after the timeout, and the service could not boot
  expect(bus.connected).toBe(false);
  const cache = new TieredCache({ policies: { p: { ttlMillis: 60_000 } }, l2: singleRedisTier({ client: data, prefix: 'boot:' }), bus, closeClients: [data, sub] });
  const errors: unknown[] = [];
  cache.events.on('error', (e) => errors.push(e.error));
  try {
    expect(await cache.getOrLoad('p', 'k', async () => 'from the database')).toBe('from the database');
    await cache.set('p', 'k', 'written', { version: 1 });
    expect(errors.length).toBeGreaterThan(0);
    // Outage errors carry the outage code, never a configuration one.
    expect(errors.every((e) => (e as { code?: string }).code === ErrorCodes.CACHE_BACKEND_UNAVAILABLE)).toBe(true);

    const connected = new Promise<void>((resolve) => {
      const off = bus.onReconnect(() => (off(), resolve()));
    });
    await server.start();
    await connected;
    expect(bus.connected).toBe(true);
    expect(cache.stats().bus.reconnects).toBe(1); // L1 filled while the bus was down was cleared then

    // The bus now delivers: another instance's invalidation reaches this one.
    const other = clientsOf(server.url);
    const otherBus = new InvalidationBus({ publisher: other.data, subscriber: other.sub, channel: 'boot:bus' });
    await otherBus.start();
    const otherCache = new TieredCache({ policies: { p: { ttlMillis: 60_000 } }, l2: singleRedisTier({ client: other.data, prefix: 'boot:' }), bus: otherBus, closeClients: [other.data, other.sub] });
    try {
      expect(await cache.getOrLoad('p', 'j', async () => 'old')).toBe('old');
      expect(cache.peek('p', 'j')).toBe('old');
      const delivered = nextEvent<{ receivedAt: number }>((fn) => (cache.events.on('bus', fn), () => void cache.events.off('bus', fn)), () => true);
      await otherCache.invalidate('p', ['j']);
      await delivered;
      expect(cache.peek('p', 'j')).toBeUndefined();
    } finally {
      await otherCache.close();
    }
  } finally {
    await cache.close();
  }
});
