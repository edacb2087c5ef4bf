import type Redis from 'ioredis';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { ManualClock } from '../../../src/kernel/clock';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { closeRedisClients } from '../../../src/cache/redis-client';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { connect } from './cache-fixtures';

/** The life of an L2 entry: served stale within grace while one load refreshes it, version keys that outlive their values, damaged entries read as misses. Real Redis. */
let cluster: TestCluster;
const clients: Redis[] = [];
const caches: TieredCache[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 0, redis: { standalone: 1 } });
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

it('stale L2 values within grace: one background refresh for many callers, and get() never returns them', async () => {
  const raw = await client();
  const clock = new ManualClock(Date.now());
  const cache = new TieredCache({ policies: { p: { ttlMillis: 1000, graceMillis: 60_000 } }, l2: singleRedisTier({ client: raw, prefix: 'rv-grace:' }), clock });
  caches.push(cache);
  await cache.getOrLoad('p', 'k', async () => 'v1');
  // A second instance sees only L2 (its L1 is empty).
  const other = new TieredCache({ policies: { p: { ttlMillis: 1000, graceMillis: 60_000 } }, l2: singleRedisTier({ client: raw, prefix: 'rv-grace:' }), clock });
  caches.push(other);
  clock.advance(1500);
  expect(await other.get('p', 'k')).toBeUndefined(); // stale is not a `get` hit
  let loads = 0;
  let release!: (v: string) => void;
  let started!: () => void;
  const loaderStarted = new Promise<void>((r) => (started = r));
  const loader = () => (loads++, started(), new Promise<string>((r) => (release = r)));
  expect(await other.getOrLoad('p', 'k', loader)).toBe('v1'); // stale served, refresh starts
  await loaderStarted;
  expect(await other.getOrLoad('p', 'k', loader)).toBe('v1'); // stale from L1, joins the refresh
  expect(await other.getOrLoad('p', 'k', loader)).toBe('v1');
  expect(loads).toBe(1);
  release('v2');
  // The fill is sent on `raw` once the loader's value is serialized; a PING behind it on the same
  // connection answers after it, and a macrotask later every continuation of the fill has run.
  await new Promise((r) => setImmediate(r));
  await raw.ping();
  await new Promise((r) => setImmediate(r));
  expect(await other.getOrLoad('p', 'k', loader)).toBe('v2');
  expect(loads).toBe(1);
});

it('a version key never expires before its value key (write and fill)', async () => {
  const raw = await client();
  const tier = singleRedisTier({ client: raw, prefix: 'rv-ver:', versionTtlMillis: 1000 });
  await tier.clear();
  await tier.write('p:w', 'x', 60_000);
  expect(await raw.pttl('rv-ver:{p:w}:ver')).toBeGreaterThan(50_000);
  await tier.invalidate(['p:f']);
  expect(await raw.pttl('rv-ver:{p:f}:ver')).toBeLessThanOrEqual(1000);
  const v = await tier.readVersion('p:f');
  expect(await tier.fill('p:f', v, 'y', 60_000)).toBe(true);
  expect(await raw.pttl('rv-ver:{p:f}:ver')).toBeGreaterThan(50_000);
});

it('a damaged L2 entry is a miss (loader runs), never a failed read; tags with `|` survive L2', async () => {
  const raw = await client();
  const cache = new TieredCache({ policies: { p: { levels: ['l2'] } }, l2: singleRedisTier({ client: raw, prefix: 'rv-bad:' }) });
  caches.push(cache);
  await raw.set('rv-bad:{p:k}', '1|1|2|3|[[broken|{"$":"toString"}');
  expect(await cache.get('p', 'k')).toBeUndefined();
  expect(await cache.getOrLoad('p', 'k', async () => 'loaded')).toBe('loaded');
  await cache.getOrLoad('p', 'tagged', async () => 'tv', { tags: ['a|b'] });
  expect(await cache.get('p', 'tagged')).toBe('tv');
  await cache.invalidateTags(['a|b']);
  expect(await cache.get('p', 'tagged')).toBeUndefined();
});
