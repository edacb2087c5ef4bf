/**
 * A standby promoted while the shard's primary is alive (a drill, a restored copy listed by
 * mistake) is a second primary with the shard's data: on real servers, the dialect refuses it and
 * keeps every write on the listed primary; once that primary is gone, the next check follows the
 * promotion as a failover.
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ErrorCodes } from '../../../src/kernel/errors';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { withPg } from '../../support/postgres-replication';
import { countedPool, kill9, ServerCounts, until, replicatedShard } from './replication-fault-fixture';

interface DB {
  events: { id: number; note: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
let db: Kysely<DB> | undefined;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 1 });
  shard = await replicatedShard(cluster, 'promotion_primary_up', [
    'create table events (id integer primary key, note text not null)',
  ]);
}, 60_000);

afterAll(async () => {
  await db?.destroy();
  await cluster?.stop();
});

test('a standby promoted while the primary answers is refused and takes no write; after the primary dies it is followed', async () => {
  const [primary, standby] = [shard.primaryUrl, shard.replicaUrls[0]!];
  const writes = new ServerCounts((text) => text.startsWith('insert'));
  const dialect = new ShardedDialect({
    topology: createTopology({ shards: [{ id: shard.id, primary, replicas: [standby] }] }),
    shardKeys: { events: 'id' },
    replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0, checkTimeoutMillis: 1000 },
    createPool: (server) => countedPool(server.url, writes),
    onPoolError: () => undefined,
  });
  const events: ReplicaEvent[] = [];
  dialect.onReplicaEvent((event) => events.push(event));
  db = new Kysely<DB>({ dialect });
  await dialect.refreshReplicas();
  expect(dialect.replicaStatus()[0]).toMatchObject({ state: 'serving' });

  await withPg(standby, (c) => c.query('select pg_promote()'));
  await until('the standby out of recovery', () => withPg(standby, async (c) => (await c.query<{ r: boolean }>('select pg_is_in_recovery() as r')).rows[0]!.r === false));
  await dialect.refreshReplicas();
  expect(dialect.replicaStatus()[0]).toMatchObject({ state: 'refused', eligible: false, code: ErrorCodes.REPLICA_REFUSED });
  expect(dialect.replicaStatus()[0]!.problem).toContain('answers as a primary');
  expect(events.some((e) => e.to === 'promoted')).toBe(false);
  for (let id = 1; id <= 20; id++) await db.insertInto('events').values({ id, note: 'kept on the primary' }).execute();
  expect(dialect.topology.shards[0]!.primary.url).toBe(primary);
  expect(writes.on(primary)).toBe(20);
  expect(writes.on(standby)).toBe(0);

  // The listed primary dies: now the promoted server is the shard's primary.
  await kill9(cluster.shards[0]!.primary);
  await until('the promotion followed', async () => {
    await dialect.refreshReplicas();
    return events.some((e) => e.to === 'promoted');
  });
  expect(dialect.topology.shards[0]!.primary.url).toBe(standby);
  await db.insertInto('events').values({ id: 21, note: 'on the promoted server' }).execute();
  expect(await withPg(standby, async (c) => (await c.query<{ n: string }>('select count(*) as n from events where id = 21')).rows[0]!.n)).toBe('1');
}, 60_000);
