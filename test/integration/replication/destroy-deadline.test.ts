/**
 * `db.destroy()` finishes while a server is frozen (SIGSTOP), on real servers: pg's `end()` waits
 * for every connection to close, which a stopped server never does; past the destroy deadline the
 * sockets still open (connections stuck in a query or still opening) are destroyed and destroy()
 * resolves.
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { DESTROY_DEADLINE_MILLIS } from '../../../src/cluster/server-pools';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { freeze, until, replicatedShard } from './replication-fault-fixture';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 1 });
  shard = await replicatedShard(cluster, 'destroy_deadline', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, 'user ' || i from generate_series(1, 10) i",
  ]);
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

test('destroy() resolves within its deadline while a replica is frozen', async () => {
  const dialect = new ShardedDialect({
    topology: createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] }),
    shardKeys: { users: 'id' },
    replicas: { readFrom: 'replica', lagCheckIntervalMillis: 250, checkTimeoutMillis: 1000, readTimeoutMillis: 1000 },
    onPoolError: () => undefined,
  });
  const db = new Kysely<DB>({ dialect });
  await until('the replica serving', () => dialect.replicaStatus().every((s) => s.eligible));
  for (let id = 1; id <= 10; id++) await db.selectFrom('users').select('name').where('id', '=', id).execute(); // pooled connections to the replica
  const thaw = freeze(cluster.shards[0]!.replicas[0]!);
  const safety = setTimeout(thaw, 30_000); // a safety net, not a wait
  try {
    // Reads and checks reach the frozen replica: clients stuck in queries, connections stuck opening.
    await Promise.all(Array.from({ length: 8 }, (_, i) => db.selectFrom('users').select('name').where('id', '=', i + 1).execute()));
    await until('the replica found unreachable by a check', () => dialect.replicaStatus()[0]!.state === 'unreachable');
    const started = performance.now();
    let millis = -1;
    const destroyed = db.destroy().then(() => (millis = performance.now() - started));
    await Promise.race([destroyed, until('destroy() to resolve', () => millis >= 0, 20_000)]);
    console.log(`destroy with a frozen replica: ${Math.round(millis)} ms (deadline ${DESTROY_DEADLINE_MILLIS} ms)`);
    expect(millis).toBeGreaterThanOrEqual(0);
    expect(millis).toBeLessThan(DESTROY_DEADLINE_MILLIS + 2000);
  } finally {
    clearTimeout(safety);
    thaw();
  }
}, 60_000);
