/**
 * One legitimately slow read (longer than `readTimeoutMillis`) on real servers: it passes its
 * deadline on the first replica (which leaves rotation), then runs on the primary only, not on the
 * next replica, so one slow statement cannot eject the whole replica set. Counts: it runs twice
 * (a replica, then the primary), one ejection, the other replica stays in service.
 */
import { Kysely, sql } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { countedPool, ServerCounts, until, replicatedShard } from './replication-fault-fixture';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
let db: Kysely<DB> | undefined;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 2 });
  shard = await replicatedShard(cluster, 'slow_read', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, 'user ' || i from generate_series(1, 10) i",
  ]);
}, 60_000);

afterAll(async () => {
  await db?.destroy();
  await cluster?.stop();
});

test('a read slower than the deadline runs on one replica, then the primary, and ejects one replica only', async () => {
  const slow = new ServerCounts((text) => text.includes('pg_sleep'));
  const dialect = new ShardedDialect({
    topology: createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] }),
    shardKeys: { users: 'id' },
    replicas: { readFrom: 'replica', readTimeoutMillis: 1000, lagCheckIntervalMillis: 0, checkTimeoutMillis: 1000 },
    createPool: (server) => countedPool(server.url, slow),
    onPoolError: () => undefined,
  });
  const events: ReplicaEvent[] = [];
  dialect.onReplicaEvent((event) => events.push(event));
  db = new Kysely<DB>({ dialect });
  await dialect.refreshReplicas();
  await until('both replicas serving', () => dialect.replicaStatus().every((s) => s.eligible));
  const rows = await db.selectFrom('users').select(['name', sql<string>`pg_sleep(1.5)::text`.as('z')]).where('id', '=', 1).execute();
  const onReplicas = shard.replicaUrls.map((url) => slow.on(url));
  const figures = { runs: onReplicas.reduce((a, b) => a + b, 0) + slow.on(shard.primaryUrl), onReplicas, onPrimary: slow.on(shard.primaryUrl), ejections: events.filter((e) => e.to === 'ejected').length };
  console.log(`slow read: ${JSON.stringify(figures)}`);
  expect(rows).toEqual([{ name: 'user 1', z: '' }]);
  expect(figures).toEqual({ runs: 2, onReplicas: expect.arrayContaining([1, 0]) as unknown as number[], onPrimary: 1, ejections: 1 });
  expect(dialect.replicaStatus().filter((s) => s.eligible)).toHaveLength(1);
}, 60_000);
