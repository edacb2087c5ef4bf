import type Redis from 'ioredis';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { closeRedisClients } from '../../../src/cache/redis-client';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { connect } from './cache-fixtures';

/** A `get` and a `getOrLoad` of the same key at the same moment (real Redis). */
let cluster: TestCluster;
let client: Redis;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 0, redis: true });
  client = await connect(cluster.redis[0]!.url);
});
afterAll(async () => {
  await closeRedisClients([client]);
  await cluster?.stop();
});

it('a getOrLoad that starts while a get reads L2 gets its loader value, never the read\'s not-found', async () => {
  const cache = new TieredCache({ policies: { p: { levels: ['l2'] } }, l2: singleRedisTier({ client, prefix: 'together:' }) });
  for (let i = 0; i < 20; i++) {
    const key = `k${i}`;
    const read = cache.get('p', key); // in flight: L2 answers nothing
    const loaded = cache.getOrLoad('p', key, async () => `v${i}`);
    expect(await loaded).toBe(`v${i}`); // before, the load joined the read's flight and returned its internal marker
    expect(await read).toBeUndefined();
    // A get that starts while a load runs joins it: the loaded value.
    const slow = cache.getOrLoad('p', `${key}-again`, async () => `w${i}`);
    expect(await cache.get('p', `${key}-again`)).toBe(`w${i}`);
    await slow;
  }
  await cache.close();
});
