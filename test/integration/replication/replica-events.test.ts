/**
 * Visible problems, on real servers: every change of a replica's or a primary's state is an event
 * with the shard id, the server's URL with its password redacted, and a reason that names the
 * shard; the status's problem text says the same. Nothing shows the password.
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ManualClock } from '../../../src/kernel/clock';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { replicatedShard } from './replication-fault-fixture';
import { waitForReplay, withPg } from '../../support/postgres-replication';

interface DB {
  users: { id: number; name: string };
}

const PASSWORD = 's3cret-Pw';
let cluster: TestCluster;
let shard: TestShardUrls;
let db: Kysely<DB>;

/** The URL with a password: the test servers trust local connections, so it is sent and ignored. */
function withPassword(url: string): string {
  const u = new URL(url);
  u.password = PASSWORD;
  return u.toString();
}

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 1 });
  shard = await replicatedShard(cluster, 'replica_events', [
    'create table users (id integer primary key, name text not null)',
  ]);
}, 60_000);

afterAll(async () => {
  await db?.destroy();
  await cluster?.stop();
});

test('an event for every change of state, naming the shard and the redacted server, never the password', async () => {
  const topology = createTopology({ shards: [{ id: shard.id, primary: withPassword(shard.primaryUrl), replicas: [withPassword(shard.replicaUrls[0]!)] }] });
  // Time stands still (checks run only when asked): lag bounds then add nothing for time passing between a check and a look.
  const clock = new ManualClock();
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, clock, replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0, maxLagBytes: 16384, checkTimeoutMillis: 2000 }, onPoolError: () => undefined });
  db = new Kysely<DB>({ dialect });
  const events: ReplicaEvent[] = [];
  const unsubscribe = dialect.onReplicaEvent((event) => events.push(event));
  const transitions = () => events.map((e) => `${e.role} ${e.from}->${e.to}`);

  await dialect.refreshReplicas();
  expect(transitions()).toEqual(['primary unchecked->up', 'replica unchecked->serving']);

  const replica = cluster.shards[0]!.replicas[0]!;
  await replica.stop();
  try {
    await dialect.refreshReplicas();
    expect(dialect.replicaStatus()[0]!.problem).toMatch(new RegExp(`^Replica postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/replica_events of shard "${shard.id}" does not answer: `));
  } finally {
    await replica.start();
  }
  await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
  await dialect.refreshReplicas();

  // Replay paused and a write of ~100 kB of WAL: beyond maxLagBytes, the replica is lagging until it catches up.
  await withPg(shard.replicaUrls[0]!, (c) => c.query('select pg_wal_replay_pause()'));
  try {
    await db.insertInto('users').values(Array.from({ length: 1000 }, (_, i) => ({ id: i + 1, name: 'x'.repeat(50) }))).execute();
    await dialect.refreshReplicas();
  } finally {
    await withPg(shard.replicaUrls[0]!, (c) => c.query('select pg_wal_replay_resume()'));
  }
  await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
  await dialect.refreshReplicas();

  expect(transitions()).toEqual([
    'primary unchecked->up',
    'replica unchecked->serving',
    'replica serving->unreachable',
    'replica unreachable->serving',
    'replica serving->lagging',
    'replica lagging->serving',
  ]);
  for (const event of events) {
    expect(event.shardId).toBe(shard.id);
    expect(event.server).toContain(':***@');
    expect(event.reason).toContain(`of shard "${shard.id}"`);
    expect(JSON.stringify(event)).not.toContain(PASSWORD);
  }
  expect(events.find((e) => e.to === 'lagging')!.reason).toContain('maxLagBytes 16384');
  expect(JSON.stringify(dialect.replicaStatus())).not.toContain(PASSWORD);

  unsubscribe();
  await replica.stop();
  try {
    await dialect.refreshReplicas();
  } finally {
    await replica.start();
  }
  expect(events).toHaveLength(6); // unsubscribed: nothing more
});
