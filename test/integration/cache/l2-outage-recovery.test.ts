import type Redis from 'ioredis';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { ManualClock } from '../../../src/kernel/clock';
import { HashRing } from '../../../src/kernel/hash-ring';
import { ringRedisTier } from '../../../src/cache/redis-ring-tier';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { closeRedisClients } from '../../../src/cache/redis-client';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { chaos, connect } from './cache-fixtures';

/** After Redis was unreachable: what it missed is replayed, and what it still holds is never served. Real Redis; outages by wrapping the real client. */
let cluster: TestCluster;
const clients: Redis[] = [];
const caches: TieredCache[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 0, redis: { standalone: 3 } });
});
afterAll(async () => {
  await Promise.all(caches.map((c) => c.close()));
  await closeRedisClients(clients);
  await cluster?.stop();
});

async function client(i = 0): Promise<Redis> {
  const c = await connect(cluster.redis[i]!.url);
  clients.push(c);
  return c;
}

it('tag invalidations that failed while Redis was down are counted once and replayed to zero', async () => {
  const raw = await client();
  const l2 = chaos(raw);
  const clock = new ManualClock(Date.now());
  const cache = new TieredCache({
    policies: { p: {} },
    l2: singleRedisTier({ client: l2, prefix: 'rv-tags:', clock, breaker: { failureThreshold: 1, openMillis: 1000 } }),
  });
  caches.push(cache);
  l2.down = true;
  await cache.invalidateTags(['t']);
  await cache.invalidateTags(['t']);
  expect(cache.stats().pendingInvalidations).toBe(1);
  l2.down = false;
  clock.advance(1000);
  await cache.flushPending();
  expect(cache.stats().pendingInvalidations).toBe(0);
});

it('ring: a server that was skipped comes back cleared, so its pre-outage copy is never served', async () => {
  const raws = await Promise.all([0, 1, 2].map((i) => client(i)));
  const wrapped = raws.map((r) => chaos(r));
  const ids = ['n0', 'n1', 'n2'];
  const ring = new HashRing(ids);
  const key = Array.from({ length: 200 }, (_, i) => `k${i}`).find((k) => ring.owner(`p:${k}`) === 'n0')!;
  const clock = new ManualClock(Date.now());
  const tier = ringRedisTier({ servers: ids.map((id, i) => ({ id, client: wrapped[i]! })), prefix: 'rv-ring:', clock, breaker: { failureThreshold: 1, openMillis: 500 } });
  await tier.clear();
  const cache = new TieredCache({ policies: { p: { levels: ['l2'] } }, l2: tier });
  caches.push(cache);
  await cache.set('p', key, 'before-outage', { version: 1 });
  expect(await raws[0]!.exists(`rv-ring:{p:${key}}`)).toBe(1);
  wrapped[0]!.down = true; // n0 unreachable from this instance (its data stays)
  expect(await cache.get('p', key)).toBeUndefined(); // fails once, breaker opens
  await cache.set('p', key, 'during-outage', { version: 2 }); // now on the stand-in
  expect(await cache.get('p', key)).toBe('during-outage');
  wrapped[0]!.down = false;
  clock.advance(500);
  const recovered = new Promise<void>((r) => {
    const off = tier.onRecover(() => (off(), r()));
  });
  expect(await cache.get('p', key)).toBe('during-outage'); // triggers the rejoin probe; still the stand-in
  await recovered;
  expect(await raws[0]!.exists(`rv-ring:{p:${key}}`)).toBe(0);
  expect(await cache.get('p', key)).toBeUndefined(); // never 'before-outage'
});
