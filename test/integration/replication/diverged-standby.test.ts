/**
 * A failover that leaves a standby on a dead branch, on real servers: standby R1 is stopped, the
 * primary commits rows only standby R2 receives, the primary is killed (SIGKILL) and R1 promoted.
 * R2 now holds WAL the new primary never had and streams from nobody (its upstream is dead); its
 * replay position is numerically past the new primary's. It must serve no read, plain or
 * read-your-writes: 0 rows of the lost branch, 0 stale read-your-writes reads.
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ReadYourWritesContext } from '../../../src/replication/read-your-writes';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { waitForReplay, withPg } from '../../support/postgres-replication';
import { countedPool, kill9, ServerCounts, until, replicatedShard } from './replication-fault-fixture';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
let db: Kysely<DB> | undefined;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 2 });
  shard = await replicatedShard(cluster, 'diverged_standby', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, 'orig' from generate_series(1, 200) i",
  ]);
}, 60_000);

afterAll(async () => {
  await db?.destroy();
  await cluster?.stop();
});

test('a standby holding WAL the promoted primary never had serves no read', async () => {
  const [primary, r1, r2] = [shard.primaryUrl, shard.replicaUrls[0]!, shard.replicaUrls[1]!];
  const reads = new ServerCounts((text) => text.includes('"users"') && text.startsWith('select'));
  const dialect = new ShardedDialect({
    topology: createTopology({ shards: [{ id: shard.id, primary, replicas: [r1, r2] }] }),
    shardKeys: { users: 'id' },
    replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0, checkTimeoutMillis: 1000 },
    createPool: (server) => countedPool(server.url, reads),
    onPoolError: () => undefined,
  });
  const events: ReplicaEvent[] = [];
  dialect.onReplicaEvent((event) => events.push(event));
  db = new Kysely<DB>({ dialect });
  await dialect.refreshReplicas();
  expect(dialect.replicaStatus().map((s) => s.state)).toEqual(['serving', 'serving']);

  // R1 receives nothing more; the primary commits rows only R2 receives, and the dialect sees the primary there.
  await cluster.shards[0]!.replicas[0]!.stop();
  await withPg(primary, (c) => c.query("update users set name = 'LOST' where id <= 100"));
  await waitForReplay(primary, r2);
  await dialect.refreshReplicas();
  await kill9(cluster.shards[0]!.primary);
  await cluster.shards[0]!.replicas[0]!.start();
  await withPg(r1, (c) => c.query('select pg_promote(true, 30)'));
  const [r2At, r1At] = await Promise.all([
    withPg(r2, async (c) => (await c.query<{ l: string }>('select pg_last_wal_replay_lsn()::text as l')).rows[0]!.l),
    withPg(r1, async (c) => (await c.query<{ l: string }>('select pg_current_wal_lsn()::text as l')).rows[0]!.l),
  ]);
  await until('the promotion followed', async () => {
    await dialect.refreshReplicas();
    return events.some((e) => e.to === 'promoted');
  });
  await dialect.refreshReplicas();
  expect(dialect.topology.shards[0]!.primary.url).toBe(r1);
  const status = dialect.replicaStatus().find((s) => s.server.includes(`:${new URL(r2).port}/`))!;
  expect(status).toMatchObject({ eligible: false, state: 'unverified' });
  expect(status.problem).toContain('no WAL receiver');

  reads.reset();
  let lost = 0;
  for (let id = 1; id <= 100; id++) {
    const row = await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirst();
    if (row?.name === 'LOST') lost++;
  }
  const context = new ReadYourWritesContext();
  let stale = 0;
  for (let k = 0; k < 20; k++) {
    const row = await dialect.readYourWrites(async () => {
      await db!.updateTable('users').set({ name: `w${k}` }).where('id', '=', 150).execute();
      return db!.selectFrom('users').select('name').where('id', '=', 150).executeTakeFirst();
    }, context);
    if (row?.name !== `w${k}`) stale++;
  }
  console.log(`diverged standby: R2 replayed ${r2At}, new primary at ${r1At}; ${JSON.stringify({ lostRows: lost, staleReadYourWrites: stale, readsOnR2: reads.on(r2), readsOnNewPrimary: reads.on(r1) })}`);
  expect(lost).toBe(0);
  expect(stale).toBe(0);
  expect(reads.on(r2)).toBe(0);
  expect(events.some((e) => e.server.includes(`:${new URL(r2).port}/`) && e.to === 'unverified')).toBe(true);
}, 90_000);
