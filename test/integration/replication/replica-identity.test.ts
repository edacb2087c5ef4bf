/**
 * Replica identity on real servers: a standby of another shard listed by mistake never serves a
 * read, whether its WAL position is behind or ahead of the shard's primary (the test cluster's
 * servers share one system identifier, so nothing else tells them apart); it is refused with a
 * coded problem naming both shards and the server. A replica that restarts proves itself again.
 */
import { Kysely, sql } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ErrorCodes } from '../../../src/kernel/errors';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { waitForReplay, withPg } from '../../support/postgres-replication';
import { countedPool, ServerCounts } from './replication-fault-fixture';
import { directPool } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let s0: TestShardUrls;
let s1: TestShardUrls;
const open: Kysely<DB>[] = [];
const counts = new ServerCounts((text) => text.includes('"users"'));

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2, replicasPerShard: 1 });
  [s0, s1] = (await cluster.createDatabase('replica_identity')) as [TestShardUrls, TestShardUrls];
  for (const shard of [s0, s1]) {
    const pool = directPool({ connectionString: shard.primaryUrl });
    await pool.query('create table users (id integer primary key, name text not null)');
    await pool.end();
  }
  // shard0 holds users 1..200; shard1 holds none (a wrong server answers every read with no row).
  await withPg(s0.primaryUrl, (c) => c.query("insert into users select i, 'user ' || i from generate_series(1, 200) i"));
  await waitForReplay(s0.primaryUrl, s0.replicaUrls[0]!);
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.destroy()));
  await cluster?.stop();
});

/** shard0 listing its own standby and, by mistake, shard1's. */
function misconfigured(): { db: Kysely<DB>; dialect: ShardedDialect; events: ReplicaEvent[] } {
  const topology = createTopology({ shards: [{ id: 'shard0', primary: s0.primaryUrl, replicas: [s0.replicaUrls[0]!, s1.replicaUrls[0]!] }] });
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0 }, createPool: (server) => countedPool(server.url, counts), onPoolError: () => undefined });
  const events: ReplicaEvent[] = [];
  dialect.onReplicaEvent((event) => events.push(event));
  const db = new Kysely<DB>({ dialect });
  open.push(db);
  return { db, dialect, events };
}

async function walPosition(url: string): Promise<bigint> {
  const text = await withPg(url, async (c) => (await c.query<{ l: string }>('select pg_current_wal_insert_lsn()::text as l')).rows[0]!.l);
  const [hi, lo] = text.split('/') as [string, string];
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

/** 200 point reads and a count: how many found their row, and how many statements the wrong server ran. */
async function readAll(db: Kysely<DB>): Promise<{ found: number; count: number; onWrongServer: number; onRightReplica: number }> {
  counts.reset();
  let found = 0;
  for (let id = 1; id <= 200; id++) if ((await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirst()) !== undefined) found++;
  const { n } = await db.selectFrom('users').select(sql<string>`count(*)`.as('n')).where('id', '>', 0).where('id', '<=', 200).executeTakeFirstOrThrow();
  return { found, count: Number(n), onWrongServer: counts.on(s1.replicaUrls[0]!), onRightReplica: counts.on(s0.replicaUrls[0]!) };
}

describe('replica identity', () => {
  test('the test cluster gives each shard a distinct identity, replayed by its standbys', async () => {
    const row = (url: string) => withPg(url, async (c) => (await c.query<{ shard_id: string; token: string }>('select shard_id, token from kysely_scale.replica_identity')).rows[0]);
    const [p0, r0, p1, r1] = await Promise.all([row(s0.primaryUrl), row(s0.replicaUrls[0]!), row(s1.primaryUrl), row(s1.replicaUrls[0]!)]);
    expect(p0).toMatchObject({ shard_id: 'shard0' });
    expect(p1).toMatchObject({ shard_id: 'shard1' });
    expect(r0).toEqual(p0);
    expect(r1).toEqual(p1);
    expect(p0!.token).not.toBe(p1!.token);
  });

  test.each([
    ['behind', 'the wrong standby is behind the shard primary (the case the old check let through)'],
    ['ahead', 'the wrong standby is ahead of the shard primary'],
  ])('another shard’s standby listed by mistake never serves a read when its WAL is %s', async (where) => {
    // Move the other shard's WAL to the side under test.
    const [at0, at1] = [await walPosition(s0.primaryUrl), await walPosition(s1.primaryUrl)];
    const wantAhead = where === 'ahead';
    if (wantAhead !== at1 > at0) {
      const target = wantAhead ? s1 : s0;
      await withPg(target.primaryUrl, (c) => c.query("create temp table filler as select repeat('x', 1000) as x from generate_series(1, 20000)"));
      await withPg(target.primaryUrl, (c) => c.query("select pg_switch_wal()"));
    }
    await waitForReplay(s1.primaryUrl, s1.replicaUrls[0]!);
    await waitForReplay(s0.primaryUrl, s0.replicaUrls[0]!);
    expect((await walPosition(s1.primaryUrl)) > (await walPosition(s0.primaryUrl))).toBe(wantAhead);

    const { db, dialect, events } = misconfigured();
    await dialect.refreshReplicas();
    const [right, wrong] = dialect.replicaStatus();
    expect(right).toMatchObject({ shardId: 'shard0', state: 'serving', eligible: true, code: null });
    expect(wrong).toMatchObject({ shardId: 'shard0', state: 'refused', eligible: false, healthy: false, code: ErrorCodes.REPLICA_REFUSED });
    expect(wrong!.problem).toContain(`Replica ${wrong!.server} of shard "shard0"`);
    expect(wrong!.problem).toContain('shard "shard1"');
    const refusal = events.find((e) => e.role === 'replica' && e.to === 'refused');
    expect(refusal).toMatchObject({ shardId: 'shard0', server: wrong!.server, from: 'unchecked', code: ErrorCodes.REPLICA_REFUSED });

    const result = await readAll(db);
    expect(result).toEqual({ found: 200, count: 200, onWrongServer: 0, onRightReplica: 201 });
  });

  test('a replica that restarts is checked again before it serves; another shard’s standby stays refused', async () => {
    const { db, dialect, events } = misconfigured();
    await dialect.refreshReplicas();
    const replica = cluster.shards[0]!.replicas[0]!;
    await replica.stop();
    try {
      await dialect.refreshReplicas();
      expect(dialect.replicaStatus().map((s) => s.state)).toEqual(['unreachable', 'refused']);
      // No replica may serve: every read goes to the primary, none to the wrong standby.
      expect(await readAll(db)).toEqual({ found: 200, count: 200, onWrongServer: 0, onRightReplica: 0 });
    } finally {
      await replica.start();
    }
    await waitForReplay(s0.primaryUrl, s0.replicaUrls[0]!);
    await dialect.refreshReplicas();
    expect(dialect.replicaStatus().map((s) => s.state)).toEqual(['serving', 'refused']);
    expect(events.filter((e) => e.server === dialect.replicaStatus()[0]!.server).map((e) => `${e.from}->${e.to}`)).toEqual(['unchecked->serving', 'serving->unreachable', 'unreachable->serving']);
    expect(await readAll(db)).toMatchObject({ found: 200, count: 200, onWrongServer: 0 });
  });

  test('a replica proven once is refused as soon as it streams from another primary', async () => {
    // The same server is listed first under its own shard, then (a topology change) under the other.
    const counts2 = new ServerCounts((text) => text.includes('"users"'));
    const own = createTopology({ shards: [{ id: 'shard1', primary: s1.primaryUrl, replicas: [s1.replicaUrls[0]!] }], version: 1 });
    const dialect = new ShardedDialect({ topology: own, shardKeys: { users: 'id' }, replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0 }, createPool: (server) => countedPool(server.url, counts2), onPoolError: () => undefined });
    open.push(new Kysely<DB>({ dialect }));
    await dialect.refreshReplicas();
    expect(dialect.replicaStatus()[0]).toMatchObject({ state: 'serving' });
    dialect.setTopology(createTopology({ shards: [{ id: 'shard1', primary: s1.primaryUrl }, { id: 'shard0', primary: s0.primaryUrl, replicas: [s1.replicaUrls[0]!] }], version: 2 }));
    await dialect.refreshReplicas();
    expect(dialect.replicaStatus()[0]).toMatchObject({ state: 'refused', eligible: false, code: ErrorCodes.REPLICA_REFUSED });
    expect(dialect.replicaStatus()[0]!.problem).toContain('shard "shard1"');
  });

  test('a primary whose data carries another shard\'s identity (a copy of that shard) proves no replica', async () => {
    // shard1's primary listed as shard0's, with its own standby: the tokens match, the shard id does not.
    const copied = createTopology({ shards: [{ id: 'shard0', primary: s1.primaryUrl, replicas: [s1.replicaUrls[0]!] }] });
    const dialect = new ShardedDialect({ topology: copied, shardKeys: { users: 'id' }, replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0 }, onPoolError: () => undefined });
    const events: ReplicaEvent[] = [];
    dialect.onReplicaEvent((event) => events.push(event));
    open.push(new Kysely<DB>({ dialect }));
    await dialect.refreshReplicas();
    expect(dialect.replicaStatus()[0]).toMatchObject({ state: 'unverified', eligible: false });
    const primaryUp = events.find((e) => e.role === 'primary' && e.to === 'up');
    expect(primaryUp?.reason).toContain('carries the identity of shard "shard1"');
  });
});

