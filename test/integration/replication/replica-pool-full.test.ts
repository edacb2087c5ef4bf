/**
 * A full read pool is not a sick replica, on real servers: with one pooled connection per server
 * and 64 readers of 100 ms statements, reads queue for a client far longer than
 * `readTimeoutMillis`. The wait for a client and the wait for the server have separate deadlines:
 * a checkout still queued at its deadline while the replica keeps answering runs elsewhere and the
 * replica stays in service. Counts: 0 ejections, 0 failed reads.
 */
import { Kysely, sql } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { countedPool, ReaderLoad, ServerCounts, summary, until, replicatedShard } from './replication-fault-fixture';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
let db: Kysely<DB> | undefined;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 2 });
  shard = await replicatedShard(cluster, 'replica_pool_full', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, 'user ' || i from generate_series(1, 1000) i",
  ]);
}, 60_000);

afterAll(async () => {
  await db?.destroy();
  await cluster?.stop();
});

test('healthy replicas behind a saturated read pool stay in service and no read fails', async () => {
  const reads = new ServerCounts((text) => text.includes('"users"'));
  const dialect = new ShardedDialect({
    topology: createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] }),
    shardKeys: { users: 'id' },
    replicas: { readFrom: 'replica', readTimeoutMillis: 2000, lagCheckIntervalMillis: 250, checkTimeoutMillis: 1000 },
    createPool: (server) => countedPool(server.url, reads, 1),
    onPoolError: () => undefined,
  });
  const events: ReplicaEvent[] = [];
  dialect.onReplicaEvent((event) => events.push(event));
  db = new Kysely<DB>({ dialect });
  await until('both replicas serving', () => dialect.replicaStatus().every((s) => s.eligible));
  const load = new ReaderLoad(64, async (reader, n) => {
    await db!.selectFrom('users').select(['name', sql<string>`pg_sleep(0.1)::text`.as('z')]).where('id', '=', ((reader * 31 + n) % 1000) + 1).execute();
  });
  // Enough reads that many waited for a client past the read deadline (64 readers on 3 connections of 100 ms reads: ~2.1 s each).
  await until('500 reads', () => load.records.length >= 500, 60_000);
  await load.stop();
  const figures = summary(load.records);
  const ejected = events.filter((e) => e.to === 'ejected');
  const ejections = ejected.length;
  if (ejections > 0) console.log(`ejections: ${ejected.map((e) => e.reason).join(' | ')}`);
  console.log(`saturated read pool: ${JSON.stringify({ ...figures, ejections, onPrimary: reads.on(shard.primaryUrl), onReplicas: shard.replicaUrls.map((u) => reads.on(u)) })}`);
  expect(ejections).toBe(0);
  expect(figures.failed).toBe(0);
  expect(figures.maxMillis).toBeGreaterThan(2000); // the load did queue past the read deadline
}, 90_000);
