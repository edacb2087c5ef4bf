import Redis, { Cluster } from 'ioredis';
import { startTestCluster, type TestCluster } from '../../src/testing';

describe('startTestCluster with a Redis Cluster', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startTestCluster({ shards: 0, redis: { standalone: 0, clusterMasters: 3 } });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  test('starts 3 masters that share the 16384 slots', async () => {
    expect(cluster.shards).toEqual([]);
    expect(cluster.redis).toEqual([]);
    expect(cluster.redisClusterNodes).toHaveLength(3);
    for (const node of cluster.redisClusterNodes) {
      const redis = new Redis({ host: node.host, port: node.port, lazyConnect: true });
      try {
        await redis.connect();
        const info = String(await redis.call('CLUSTER', 'INFO'));
        expect(info).toContain('cluster_state:ok');
        expect(info).toContain('cluster_slots_assigned:16384');
        expect(info).toContain('cluster_known_nodes:3');
        expect(info).toContain('cluster_size:3');
      } finally {
        redis.disconnect();
      }
    }
  });

  test('set and get through an ioredis Cluster client on keys in different slots and nodes', async () => {
    const client = new Cluster([...cluster.redisClusterNodes], { lazyConnect: true });
    try {
      await client.connect();
      const keys = Array.from({ length: 30 }, (_, i) => `key:${i}`);
      for (const key of keys) await client.set(key, `value of ${key}`);
      for (const key of keys) expect(await client.get(key)).toBe(`value of ${key}`);

      const slots = new Set<number>();
      for (const key of keys) slots.add(Number(await client.call('CLUSTER', 'KEYSLOT', key)));
      expect(slots.size).toBeGreaterThan(10);
      // Every master holds some of the keys: the client really followed the slot map.
      const sizes = await Promise.all(client.nodes('master').map((node) => node.dbsize()));
      expect(sizes).toHaveLength(3);
      for (const size of sizes) expect(size).toBeGreaterThan(0);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(keys.length);
    } finally {
      client.disconnect();
    }
  });
});
