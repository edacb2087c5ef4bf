import type Redis from 'ioredis';
import type { Cluster } from 'ioredis';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import type { L2Tier } from '../../../src/cache/l2-tier';
import { clusterRedisTier } from '../../../src/cache/redis-cluster-tier';
import { ringRedisTier } from '../../../src/cache/redis-ring-tier';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { closeRedisClients } from '../../../src/cache/redis-client';
import { connect, connectCluster } from './cache-fixtures';

/** One contract, every L2 backend (single node, ring of 4 standalone servers, Redis Cluster of 3 masters). */
let cluster: TestCluster;
const clients: (Redis | Cluster)[] = [];
const backends: Record<string, () => Promise<L2Tier>> = {
  single: async () => {
    const c = await connect(cluster.redis[0]!.url);
    clients.push(c);
    return singleRedisTier({ client: c, prefix: 'contract-single:' });
  },
  ring: async () => {
    const servers = await Promise.all(cluster.redis.map(async (s, i) => ({ id: `r${i}`, client: await connect(s.url) })));
    clients.push(...servers.map((s) => s.client as Redis));
    return ringRedisTier({ servers, prefix: 'contract-ring:' });
  },
  cluster: async () => {
    const c = await connectCluster(cluster.redisClusterNodes);
    clients.push(c);
    return clusterRedisTier({ cluster: c, prefix: 'contract-cluster:' });
  },
};

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 0, redis: { standalone: 4, clusterMasters: 3 } });
});
afterAll(async () => {
  await closeRedisClients(clients);
  await cluster?.stop();
});

describe.each(Object.keys(backends))('L2 contract: %s', (kind) => {
  let tier: L2Tier;
  beforeAll(async () => {
    tier = await backends[kind]!();
    await tier.clear();
  });

  it('gets what a versioned fill stored, and nothing else', async () => {
    expect(await tier.get('p:a')).toBeNull();
    const v = await tier.readVersion('p:a');
    expect(await tier.fill('p:a', v, 'payload-a', 60_000)).toBe(true);
    expect(await tier.get('p:a')).toBe('payload-a');
  });

  it('refuses a fill whose version moved (an invalidation overtook the load)', async () => {
    const v = await tier.readVersion('p:b');
    await tier.invalidate(['p:b']);
    expect(await tier.fill('p:b', v, 'stale', 60_000)).toBe(false);
    expect(await tier.get('p:b')).toBeNull();
    const v2 = await tier.readVersion('p:b');
    const w = tier.write('p:b', 'written', 60_000);
    await w;
    expect(await tier.fill('p:b', v2, 'stale-again', 60_000)).toBe(false);
    expect(await tier.get('p:b')).toBe('written');
  });

  it('a versioned write lands only when no greater version was written, even after an invalidation', async () => {
    expect(await tier.write('p:v', 'v5', 60_000, { version: '5' })).toBe(true);
    expect(await tier.write('p:v', 'v4', 60_000, { version: '4' })).toBe(false); // older, arriving late
    expect(await tier.get('p:v')).toBe('v5');
    expect(await tier.write('p:v', 'v5 again', 60_000, { version: '5' })).toBe(true); // the same version: a replay
    expect(await tier.write('p:v', 'v10', 60_000, { version: '10' })).toBe(true); // compared as numbers, not text
    await tier.invalidate(['p:v']);
    expect(await tier.write('p:v', 'v9', 60_000, { version: '9' })).toBe(false); // the high-water mark outlives the invalidation
    expect(await tier.get('p:v')).toBeNull();
    expect(await tier.write('p:v', 'v18446744073709551616', 60_000, { version: '18446744073709551616' })).toBe(true); // beyond 2^64
    expect(await tier.get('p:v')).toBe('v18446744073709551616');
  });

  it('a write conditioned on a version read earlier lands only if nothing wrote or invalidated the key since', async () => {
    const before = await tier.readVersion('p:c');
    expect(await tier.write('p:c', 'first', 60_000, { ifVersion: before })).toBe(true);
    expect(await tier.write('p:c', 'second', 60_000, { ifVersion: before })).toBe(false); // the first write moved the version
    expect(await tier.get('p:c')).toBe('first');
    const read = await tier.readVersion('p:c');
    await tier.invalidate(['p:c']);
    expect(await tier.write('p:c', 'after', 60_000, { ifVersion: read })).toBe(false);
    expect(await tier.get('p:c')).toBeNull();
  });

  it('mgets across servers and slots, in order', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `p:m${i}`);
    await Promise.all(keys.map((k) => tier.write(k, `v-${k}`, 60_000)));
    await tier.invalidate(['p:m7', 'p:m31']);
    const vals = await tier.mget([...keys, 'p:none']);
    expect(vals).toEqual([...keys.map((k) => (k === 'p:m7' || k === 'p:m31' ? null : `v-${k}`)), null]);
  });

  it('expires values after their TTL (Redis PX)', async () => {
    await tier.write('p:ttl', 'x', 1);
    const deadline = Date.now() + 2000;
    let v: string | null = 'x';
    // Redis owns this clock; poll it (bounded) rather than sleeping a guessed time.
    while (v !== null && Date.now() < deadline) v = await tier.get('p:ttl');
    expect(v).toBeNull();
  });

  it('keeps epoch counters that only move forward', async () => {
    const [e0] = await tier.readEpochs(['tag:x']);
    const [again] = await tier.readEpochs(['tag:x']);
    expect(again).toBe(e0);
    const e1 = await tier.bumpEpoch('tag:x');
    expect(e1).toBe(e0! + 1);
    expect(await tier.readEpochs(['tag:x', 'tag:y'])).toEqual([e1, expect.any(Number)]);
  });

  it('clears its prefix only', async () => {
    await tier.write('p:z', 'z', 60_000);
    await tier.clear();
    expect(await tier.get('p:z')).toBeNull();
    expect(Object.values(tier.health()).every((s) => s === 'closed')).toBe(true);
  });
});
