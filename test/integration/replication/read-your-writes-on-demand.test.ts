/**
 * Read-your-writes checked on demand and monotonic reads, on real servers. With checks only when
 * asked (so the last check always predates the caller's write), a read after a write waits for a
 * replica to replay the write instead of reading the primary; and within a context, reads never go
 * back in time when the strategy alternates between a replica that is ahead and one that is behind.
 */
import { Kysely, sql } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ReadYourWritesContext } from '../../../src/replication/read-your-writes';
import { roundRobin } from '../../../src/balancer/strategies/round-robin';
import type { ReplicaReadOptions } from '../../../src/replication/replica-options';
import { parseLsn } from '../../../src/cluster/wal-position';
import { waitForReplay, withPg } from '../../support/postgres-replication';
import { countedPool, ServerCounts, replicatedShard } from './replication-fault-fixture';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
const open: Kysely<DB>[] = [];
const reads = new ServerCounts((text) => text.startsWith('select') && text.includes('"users"'));

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 2 });
  shard = await replicatedShard(cluster, 'ryw_on_demand', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, '0' from generate_series(1, 100) i",
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.destroy()));
  await cluster?.stop();
});

function connect(replicas: ReplicaReadOptions): { db: Kysely<DB>; dialect: ShardedDialect } {
  const topology = createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] });
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0, ...replicas }, createPool: (server) => countedPool(server.url, reads), onPoolError: () => undefined });
  const db = new Kysely<DB>({ dialect });
  open.push(db);
  return { db, dialect };
}

test('a read after a write waits for a replica to replay it (checked on demand) instead of reading the primary', async () => {
  // Generous wait: replay takes milliseconds, but this machine runs other suites at once.
  const { db, dialect } = connect({ replayWaitMillis: 2000 });
  await dialect.refreshReplicas(); // the only periodic measurement: every write below comes after it
  const context = new ReadYourWritesContext();
  reads.reset();
  let stale = 0;
  for (let k = 1; k <= 20; k++) {
    const row = await dialect.readYourWrites(async () => {
      await db.updateTable('users').set({ name: String(k) }).where('id', '=', 1).execute();
      return db.selectFrom('users').select('name').where('id', '=', 1).executeTakeFirstOrThrow();
    }, context);
    if (row.name !== String(k)) stale++;
  }
  const [onPrimary, ...onReplicas] = [shard.primaryUrl, ...shard.replicaUrls].map((url) => reads.on(url));
  console.log(`read-your-writes on demand: ${JSON.stringify({ reads: 20, stale, onPrimary, onReplicas })}`);
  expect(stale).toBe(0);
  // Before, every one of these reads went to the primary (the last check predated each write).
  expect(onPrimary).toBe(0);
  expect(onReplicas.reduce((a, b) => a + b, 0)).toBe(20);
});

test('within a context reads never go back in time across replicas, even when the strategy alternates', async () => {
  const { db, dialect } = connect({ strategy: roundRobin() });
  await withPg(shard.primaryUrl, (c) => c.query("update users set name = '1' where id = 2"));
  for (const url of shard.replicaUrls) await waitForReplay(shard.primaryUrl, url);
  await dialect.refreshReplicas(); // the primary seen at a position both replicas hold: their staleness is bounded from here
  // Replica 1 stops replaying; replica 0 gets the newer value.
  await withPg(shard.replicaUrls[1]!, (c) => c.query('select pg_wal_replay_pause()'));
  try {
    await withPg(shard.primaryUrl, (c) => c.query("update users set name = '2' where id = 2"));
    await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
    await dialect.refreshReplicas();
    expect(dialect.replicaStatus().every((s) => s.eligible)).toBe(true); // both within the lag bounds

    // Without a context, round-robin shows both values: the test could fail.
    const seenWithout = new Set<string>();
    for (let i = 0; i < 6; i++) seenWithout.add((await db.selectFrom('users').select('name').where('id', '=', 2).executeTakeFirstOrThrow()).name);
    expect(seenWithout).toEqual(new Set(['1', '2']));

    reads.reset();
    const seen: number[] = [];
    await dialect.readYourWrites(async () => {
      for (let i = 0; i < 40; i++) seen.push(Number((await db.selectFrom('users').select('name').where('id', '=', 2).executeTakeFirstOrThrow()).name));
    });
    const backInTime = seen.filter((v, i) => i > 0 && v < seen[i - 1]!).length;
    console.log(`monotonic reads: ${JSON.stringify({ reads: seen.length, backInTime, onReplica0: reads.on(shard.replicaUrls[0]!), onReplica1: reads.on(shard.replicaUrls[1]!), onPrimary: reads.on(shard.primaryUrl) })}`);
    expect(backInTime).toBe(0);
    expect(seen.at(-1)).toBe(2);
    expect(reads.on(shard.replicaUrls[0]!)).toBeGreaterThan(0);
  } finally {
    await withPg(shard.replicaUrls[1]!, (c) => c.query('select pg_wal_replay_resume()'));
  }
});

test('after a WAL segment switch on an idle primary, caught-up replicas serve and a read after it does not wait for a record that never comes', async () => {
  // A switch leaves the primary's insert position past the next segment's page header while its
  // standbys report the boundary; archive_timeout does this to idle primaries. The primary stays idle below.
  const { db, dialect } = connect({ replayWaitMillis: 2000 });
  for (const url of shard.replicaUrls) await waitForReplay(shard.primaryUrl, url);
  await dialect.refreshReplicas();
  reads.reset();
  const row = await dialect.readYourWrites(async () => {
    await sql`select pg_switch_wal()`.execute(db); // raw SQL may write: its position is noted
    return db.selectFrom('users').select('name').where('id', '=', 3).executeTakeFirstOrThrow();
  }, new ReadYourWritesContext());
  expect(row.name).toBe('0');
  expect(reads.on(shard.primaryUrl)).toBe(0); // it waited for a replica and one had the position
  for (const url of shard.replicaUrls) await waitForReplay(shard.primaryUrl, url);
  await dialect.refreshReplicas();
  expect(dialect.replicaStatus().map((s) => [s.state, s.problem])).toEqual(shard.replicaUrls.map(() => ['serving', null]));
});

test('the position of a write is what the primary flushed: a record nobody waits for (left unflushed until the WAL writer wakes) is not waited for', async () => {
  const { db, dialect } = connect({ replayWaitMillis: 2000 });
  for (const url of shard.replicaUrls) await waitForReplay(shard.primaryUrl, url);
  await dialect.refreshReplicas();
  const context = new ReadYourWritesContext();
  await dialect.readYourWrites(async () => {
    await db.updateTable('users').set({ name: 'flushed' }).where('id', '=', 4).execute();
    // A non-transactional message: inserted into the WAL, flushed only when the WAL writer wakes
    // (wal_writer_delay, longer on an idle server). Raw SQL may write, so its position is noted.
    await sql`select pg_logical_emit_message(false, 'kysely-scale-test', 'unflushed')`.execute(db);
  }, context);
  const flushed = await withPg(shard.primaryUrl, async (c) => parseLsn((await c.query<{ l: string }>('select pg_current_wal_flush_lsn()::text as l')).rows[0]!.l));
  // Before, the noted position was the insert position, past the unflushed message.
  expect(context.requiredPosition(shard.id)! <= flushed).toBe(true);
  reads.reset();
  const row = await dialect.readYourWrites(() => db.selectFrom('users').select('name').where('id', '=', 4).executeTakeFirstOrThrow(), context);
  expect(row.name).toBe('flushed');
  expect(reads.on(shard.primaryUrl)).toBe(0);
});
