/**
 * A listed replica that streams from a promoted copy of its own shard, on real servers: standby R1
 * is promoted while the listed primary P stays up, R3 is a fresh standby of R1 (pg_basebackup), and
 * the topology lists P with replica R3. R3 replays the shard's identity token (R1 copied it), so
 * the identity check alone passes. The copy's data then diverges. R3 must serve no read:
 * - a role that sees the WAL receiver's timeline: refused (it streams timeline 2, P writes on 1);
 * - a role that does not (no pg_read_all_stats): refused because it replayed past P's position, read after it.
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ErrorCodes } from '../../../src/kernel/errors';
import { ReadYourWritesContext } from '../../../src/replication/read-your-writes';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import type { LocalPgServer } from '../../../src/testing/pg-local-server';
import { waitForReplay, withPg } from '../../support/postgres-replication';
import { startStandbyOf } from './cascaded-standby';
import { countedPool, ServerCounts, replicatedShard } from './replication-fault-fixture';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
let r3: LocalPgServer | undefined;
const dbs: Kysely<DB>[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 1, backend: 'local' });
  shard = await replicatedShard(cluster, 'promoted_copy', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, 'orig' from generate_series(1, 200) i",
    'create role plain_reader login',
    'grant select, update on users to plain_reader',
  ]);
}, 60_000);

afterAll(async () => {
  for (const db of dbs) await db.destroy();
  await r3?.stop();
  await cluster?.stop();
});

function asRole(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  return u.toString();
}

async function probe(primary: string, replica: string) {
  const reads = new ServerCounts((text) => text.includes('"users"') && text.startsWith('select'));
  const dialect = new ShardedDialect({
    topology: createTopology({ shards: [{ id: shard.id, primary, replicas: [replica] }] }),
    shardKeys: { users: 'id' },
    replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0, checkTimeoutMillis: 1000 },
    createPool: (server) => countedPool(server.url, reads),
    onPoolError: () => undefined,
  });
  const events: ReplicaEvent[] = [];
  dialect.onReplicaEvent((event) => events.push(event));
  const db = new Kysely<DB>({ dialect });
  dbs.push(db);
  await dialect.refreshReplicas();
  await dialect.refreshReplicas(); // the identity is written by the first check of the primary
  const status = dialect.replicaStatus()[0]!;
  let copied = 0;
  for (let id = 1; id <= 100; id++) if ((await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirst())?.name === 'COPY') copied++;
  const context = new ReadYourWritesContext();
  let stale = 0;
  for (let k = 0; k < 10; k++) {
    const row = await dialect.readYourWrites(async () => {
      await db.updateTable('users').set({ name: `p${k}` }).where('id', '=', 7).execute();
      return db.selectFrom('users').select('name').where('id', '=', 7).executeTakeFirst();
    }, context);
    if (row?.name !== `p${k}`) stale++;
  }
  return { status, copied, stale, readsOnReplica: reads.on(replica), refusedEvents: events.filter((e) => e.to === 'refused' && e.code === ErrorCodes.REPLICA_REFUSED).length };
}

test('a standby of a promoted copy of the shard is refused: by its timeline, or by its position past the primary', async () => {
  const [primary, r1] = [shard.primaryUrl, shard.replicaUrls[0]!];
  // The primary's identity first (written by a dialect's first check), so the copy carries the same token.
  const first = new ShardedDialect({ topology: createTopology({ shards: [{ id: shard.id, primary, replicas: [] }] }), shardKeys: { users: 'id' }, replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0 }, onPoolError: () => undefined });
  await first.refreshReplicas();
  dbs.push(new Kysely<DB>({ dialect: first }));
  await waitForReplay(primary, r1);
  await withPg(r1, (c) => c.query('select pg_promote(true, 30)'));
  r3 = await startStandbyOf(cluster, new URL(r1).port === '' ? 5432 : Number(new URL(r1).port), 'copy-standby');
  const r3Url = r3.url.replace(/\/postgres$/, '/promoted_copy');
  await withPg(r1, async (c) => {
    await c.query("update users set name = 'COPY'");
    await c.query('create table junk as select g from generate_series(1, 100000) g');
  });
  await waitForReplay(r1, r3Url);
  const [identityP, identityR3, receiver] = await Promise.all([
    withPg(primary, async (c) => (await c.query<{ token: string }>('select token from kysely_scale.replica_identity')).rows[0]!.token),
    withPg(r3Url, async (c) => (await c.query<{ token: string }>('select token from kysely_scale.replica_identity')).rows[0]!.token),
    withPg(r3Url, async (c) => (await c.query<{ received_tli: number }>('select received_tli from pg_stat_wal_receiver')).rows[0]!),
  ]);
  expect(identityR3).toBe(identityP); // the identity check alone cannot tell the copy apart
  expect(receiver.received_tli).toBe(2);

  const superuser = await probe(primary, r3Url);
  const plain = await probe(asRole(primary, 'plain_reader'), asRole(r3Url, 'plain_reader'));
  const figures = (p: typeof superuser) => ({ state: p.status.state, copied: p.copied, stale: p.stale, readsOnReplica: p.readsOnReplica, refusedEvents: p.refusedEvents });
  console.log(`standby of a promoted copy: superuser ${JSON.stringify(figures(superuser))}; role without pg_read_all_stats ${JSON.stringify(figures(plain))}`);
  expect(superuser.status).toMatchObject({ state: 'refused', eligible: false, code: ErrorCodes.REPLICA_REFUSED });
  expect(superuser.status.problem).toContain('newer than its primary');
  expect(plain.status).toMatchObject({ state: 'refused', eligible: false, code: ErrorCodes.REPLICA_REFUSED });
  expect(plain.status.problem).toContain('past its primary');
  for (const p of [superuser, plain]) {
    expect(p.copied).toBe(0);
    expect(p.stale).toBe(0);
    expect(p.readsOnReplica).toBe(0);
    expect(p.refusedEvents).toBe(1);
  }
}, 120_000);
