import Redis from 'ioredis';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { ManualClock, systemClock, type Clock } from '../../../src/kernel/clock';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { ringRedisTier } from '../../../src/cache/redis-ring-tier';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { TieredCache } from '../../../src/cache/tiered-cache';
import type { TieredCacheOptions } from '../../../src/cache/tiered-cache-options';
import { closeRedisClients } from '../../../src/cache/redis-client';
import { connect, nextEvent, ready } from './cache-fixtures';

let cluster: TestCluster;
const clients: Redis[] = [];
const caches: TieredCache[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 0, redis: { standalone: 4 } });
});
afterAll(async () => {
  // Each cache ends its own clients (closeClients); the rest are ended here, whatever their state.
  await Promise.all(caches.map((c) => c.close()));
  await closeRedisClients(clients);
  await cluster?.stop();
});

/** One app instance: its own connections (data + subscriber), its own L1. */
async function instance(url: string, prefix: string, extra: Partial<TieredCacheOptions> = {}, breakerClock?: Clock): Promise<TieredCache> {
  const data = await connect(url);
  const sub = await connect(url, 'subscriber');
  clients.push(data, sub);
  const bus = new InvalidationBus({ publisher: data, subscriber: sub, channel: `${prefix}bus` });
  await bus.start();
  const cache = new TieredCache({
    policies: { user_data: { ttlMillis: 60_000 }, fund_data: { ttlMillis: 60_000, writeThrough: false } },
    l2: singleRedisTier({ client: data, prefix, ...(breakerClock ? { clock: breakerClock, breaker: { failureThreshold: 1, openMillis: 1000 } } : {}) }),
    bus,
    closeClients: [data, sub],
    ...extra,
  });
  caches.push(cache);
  return cache;
}

const onBus = (c: TieredCache) => (fn: (e: { receivedAt: number }) => void) => {
  c.events.on('bus', fn);
  return () => void c.events.off('bus', fn);
};

/**
 * Waits, on events, until each instance has received every message the others published; fails
 * after `timeoutMillis` without one. One listener per instance and one timer, all removed on return.
 */
function busQuiet(all: TieredCache[], timeoutMillis = 3000): Promise<void> {
  const done = () => {
    const published = all.map((c) => c.stats().bus.published);
    return all.every((c, i) => c.stats().bus.received === published.reduce((a, b, j) => (j === i ? a : a + b), 0));
  };
  if (done()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const finish = (settle: () => void): void => {
      clearTimeout(timer);
      for (const c of all) c.events.off('bus', check);
      settle();
    };
    const check = (): void => {
      if (done()) finish(resolve);
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`bus not quiet within ${timeoutMillis} ms: ${JSON.stringify(all.map((c) => c.stats().bus))}`))), timeoutMillis);
    for (const c of all) c.events.on('bus', check);
  });
}

it('after a write-through on A returns, B never returns the old value once the bus delivered', async () => {
  const a = await instance(cluster.redis[0]!.url, 'coh1:');
  const b = await instance(cluster.redis[0]!.url, 'coh1:');
  const deliveries: number[] = [];
  for (let round = 0; round < 50; round++) {
    const key = `u${round % 5}`;
    await b.getOrLoad('user_data', key, async () => `old-${round}`);
    expect(await b.get('user_data', key)).toBeDefined(); // B holds it in L1
    const delivered = nextEvent(onBus(b), () => true);
    const start = performance.now();
    await a.set('user_data', key, `new-${round}`, { version: round }); // versioned: L2 keeps the newest
    const { receivedAt } = await delivered;
    deliveries.push(receivedAt - start);
    expect(await b.get('user_data', key)).toBe(`new-${round}`);
    expect(b.peek('user_data', key)).toBe(`new-${round}`);
  }
  deliveries.sort((x, y) => x - y);
  const p50 = deliveries[deliveries.length >> 1]!;
  const max = deliveries[deliveries.length - 1]!;
  console.log(`bus delivery after write-through (publish→B applied), 50 rounds: p50 ${p50.toFixed(2)} ms, max ${max.toFixed(2)} ms`);
  expect(b.stats().bus.received).toBe(50);
});

it("a write of key '1' on A replaces the entry B holds for key 1 (one key rule in L1, L2 and on the bus)", async () => {
  const a = await instance(cluster.redis[0]!.url, 'coh-keys:');
  const b = await instance(cluster.redis[0]!.url, 'coh-keys:');
  expect(await b.getOrLoad('user_data', 1, async () => 'old')).toBe('old');
  expect(b.peek('user_data', 1)).toBe('old');
  const delivered = nextEvent(onBus(b), () => true);
  await a.set('user_data', '1', 'new', { version: 1 });
  await delivered;
  expect(b.peek('user_data', 1)).toBeUndefined(); // before, B's L1 kept `1` while the bus named '1'
  expect(await b.get('user_data', 1n)).toBe('new');
});

it('hundreds of rounds of concurrent fills and invalidations on the same keys leave no stale value', async () => {
  const a = await instance(cluster.redis[1]!.url, 'coh2:');
  const b = await instance(cluster.redis[1]!.url, 'coh2:');
  const truth = new Map<string, number>();
  const keys = ['k0', 'k1', 'k2'];
  // A loader reads the source of truth, then yields for a random while (a slow database).
  const loader = (key: string) => async () => {
    const v = truth.get(key) ?? 0;
    for (let i = Math.floor(Math.random() * 4); i > 0; i--) await new Promise((r) => setImmediate(r));
    return v;
  };
  for (let round = 0; round < 300; round++) {
    const ops: Promise<unknown>[] = [];
    for (const key of keys) {
      ops.push(a.getOrLoad('fund_data', key, loader(key)), b.getOrLoad('fund_data', key, loader(key)));
      if (Math.random() < 0.6) {
        const writer = Math.random() < 0.5 ? a : b;
        // Invalidate-on-write: the source of truth first, then the invalidation.
        ops.push(writer.set('fund_data', key, -1, { save: async () => void truth.set(key, (truth.get(key) ?? 0) + 1) }));
      }
      ops.push(a.getOrLoad('fund_data', key, loader(key)));
    }
    await Promise.all(ops);
    await busQuiet([a, b]);
    for (const key of keys) {
      const want = truth.get(key) ?? 0;
      for (const c of [a, b]) {
        const cached = await c.get<number>('fund_data', key);
        if (cached !== undefined && cached !== want) throw new Error(`round ${round}: ${key} cached ${cached}, truth ${want}`);
      }
    }
  }
  const prevented = a.stats().policies.fund_data!.staleFillsPrevented + b.stats().policies.fund_data!.staleFillsPrevented;
  console.log(`300 rounds: ${prevented} stale fills prevented, 0 stale values survived`);
  expect(prevented).toBeGreaterThan(0);
});

it('Redis stopped mid-load: no get fails; started again: L2 hits resume without restart', async () => {
  const server = cluster.redis[2]!;
  const clock = new ManualClock(Date.now());
  const a = await instance(server.url, 'coh3:', { clock: { ...systemClock, now: () => clock.now() } }, clock);
  const b = await instance(server.url, 'coh3:', { clock: { ...systemClock, now: () => clock.now() } }, clock);
  let loads = 0;
  const load = (k: string) => async () => `v-${k}-${++loads}`;
  await a.getOrLoad('user_data', 'x', load('x'));
  expect(await b.get('user_data', 'x')).toBeDefined(); // L2 hit on B

  const reads = Array.from({ length: 20 }, (_, i) => a.getOrLoad('user_data', `k${i % 7}`, load(`k${i}`)));
  await server.stop();
  const more = Array.from({ length: 20 }, (_, i) => b.getOrLoad('user_data', `m${i % 7}`, load(`m${i}`)));
  const results = await Promise.allSettled([...reads, ...more, a.get('user_data', 'nothing'), b.set('user_data', 'w', 'written-while-down', { version: 1 })]);
  expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
  expect(b.peek('user_data', 'w')).toBe('written-while-down');
  expect(b.stats().pendingInvalidations).toBeGreaterThan(0);

  const back = clients.filter((c) => c.options.port === server.port).map((c) => new Promise((r) => c.once('ready', r)));
  await server.start();
  await Promise.all(back);
  clock.advance(1000); // breaker cooldown passes; the next call is the probe
  await a.getOrLoad('user_data', 'after', load('after'));
  await b.flushPending();
  const before = b.stats().policies.user_data!.l2.hits;
  expect(await b.get('user_data', 'after')).toBe(await a.get('user_data', 'after'));
  expect(b.stats().policies.user_data!.l2.hits).toBe(before + 1);
  expect(b.stats().pendingInvalidations).toBe(0);
  expect(a.stats().bus.reconnects + b.stats().bus.reconnects).toBeGreaterThan(0);
});

it('ring: an unreachable server is skipped to the next one; reads never fail', async () => {
  // Ring server n0 runs on Redis 3, which no other test uses: stopping it never reaches another test's
  // clients (n1, n2 on Redis 1, 2 stay up). n0 does not own the namespace epoch key, so its keys'
  // stand-ins serve them from L2 below.
  const servers = await Promise.all([3, 1, 2].map(async (r, i) => ({ id: `n${i}`, client: await connect(cluster.redis[r]!.url) })));
  clients.push(...servers.map((s) => s.client));
  const clock = new ManualClock(Date.now());
  const tier = ringRedisTier({ servers, prefix: 'ringfail:', clock, breaker: { failureThreshold: 1, openMillis: 500 } });
  await tier.clear();
  const cache = new TieredCache({ policies: { p: { levels: ['l2'] } }, l2: tier });
  caches.push(cache);
  for (let i = 0; i < 30; i++) await cache.getOrLoad('p', `k${i}`, async () => i);
  // Redis of ring server n0 goes away mid-run; it is started again below.
  const victim = cluster.redis[3]!;
  await victim.stop();
  const got = await Promise.all(Array.from({ length: 30 }, (_, i) => cache.getOrLoad('p', `k${i}`, async () => i)));
  expect(got).toEqual(Array.from({ length: 30 }, (_, i) => i));
  expect(tier.health().n0).not.toBe('closed');
  // Keys of n0 now live on their stand-ins: a second pass is served from L2.
  const hitsBefore = cache.stats().policies.p!.l2.hits;
  await Promise.all(Array.from({ length: 30 }, (_, i) => cache.getOrLoad('p', `k${i}`, async () => -1)));
  expect(cache.stats().policies.p!.l2.hits - hitsBefore).toBe(30);
  await victim.start();
  await ready(servers[0]!.client);
});
