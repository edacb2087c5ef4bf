import { execFileSync } from 'node:child_process';
import { Kysely, sql } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import type { ShardedDialectConfig } from '../../../src/sharding/dialect/sharded-dialect-config';
import { ReadYourWritesContext } from '../../../src/replication/read-your-writes';
import { withPrimary, withShard } from '../../../src/sharding/routing/route-hint';
import { peakEwma } from '../../../src/balancer/strategies/peak-ewma';
import type { Strategy } from '../../../src/balancer/balancer-strategy';
import { countingPool, interceptingPool, StatementLog } from '../sharding/sharded-fixture';
import type { PoolLike } from '../../../src/cluster/server-pools';
import { eventually, waitForReplay, withPg } from '../../support/postgres-replication';
import { replicatedShard } from './replication-fault-fixture';
import { runTsxScript, srcModule } from '../../support/tsx-script';

interface DB {
  users: { id: number; name: string };
}

// One shard, a primary and two real streaming replicas: where each statement ran is read from the
// statement log of the real clients; lag is made by pausing WAL replay on the replicas.
let cluster: TestCluster;
let shard: TestShardUrls;
let topology: Topology;
const log = new StatementLog();
const open: Kysely<DB>[] = [];

function connect(replicas: ShardedDialectConfig['replicas'], options: Partial<ShardedDialectConfig> = {}): { db: Kysely<DB>; dialect: ShardedDialect } {
  // Stopping a replica ends its idle connections: expected here, so not reported.
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, replicas, createPool: (server) => countingPool(server.url, log), onPoolError: () => undefined, ...options });
  const db = new Kysely<DB>({ dialect });
  open.push(db);
  return { db, dialect };
}

/** Statements (of the users table) run per server since the last reset: [primary, replica 0, replica 1]. */
function where(): number[] {
  return [shard.primaryUrl, ...shard.replicaUrls].map((url) => log.on(url).filter((s) => s.sql.includes('"users"')).length);
}

async function setReplay(paused: boolean): Promise<void> {
  for (const url of shard.replicaUrls) await withPg(url, (c) => c.query(paused ? 'select pg_wal_replay_pause()' : 'select pg_wal_replay_resume()'));
  if (!paused) for (const url of shard.replicaUrls) await waitForReplay(shard.primaryUrl, url);
}

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 2 });
  shard = await replicatedShard(cluster, 'replica_reads', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, 'user ' || i from generate_series(1, 100) i",
  ]);
  topology = createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] });
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.destroy()));
  await cluster?.stop();
});

beforeEach(() => log.reset());

describe('reads from streaming replicas', () => {
  test('plain reads go to replicas once measured; writes, transactions and locking reads go to the primary', async () => {
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 0 });
    // Not measured yet: a replica's lag is unknown, so it serves nothing.
    expect(dialect.replicaStatus().map((s) => s.eligible)).toEqual([false, false]);
    await db.selectFrom('users').selectAll().where('id', '=', 1).execute();
    expect(where()).toEqual([1, 0, 0]);

    await dialect.refreshReplicas();
    expect(dialect.replicaStatus()).toMatchObject([
      { shardId: shard.id, healthy: true, lagBytes: 0, eligible: true },
      { shardId: shard.id, healthy: true, lagBytes: 0, eligible: true },
    ]);
    log.reset();
    for (let id = 1; id <= 20; id++) expect(await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow()).toEqual({ name: `user ${id}` });
    const [primary, r0, r1] = where();
    expect(primary).toBe(0);
    expect(r0! + r1!).toBe(20);
    expect(Math.min(r0!, r1!)).toBeGreaterThan(0); // least-connections takes idle replicas in turn

    log.reset();
    await db.updateTable('users').set({ name: 'renamed' }).where('id', '=', 100).execute();
    await db.selectFrom('users').selectAll().where('id', '=', 2).forUpdate().execute();
    await db.transaction().execute((trx) => trx.selectFrom('users').selectAll().where('id', '=', 3).execute());
    expect(where()).toEqual([3, 0, 0]);
  });

  test('a replica further behind than maxLagBytes serves no reads until it catches up', async () => {
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 0, maxLagBytes: 0 });
    await setReplay(true);
    try {
      await db.insertInto('users').values({ id: 1001, name: 'fresh' }).execute();
      await dialect.refreshReplicas();
      const status = dialect.replicaStatus();
      expect(status.every((s) => s.healthy && s.lagBytes! > 0 && !s.eligible)).toBe(true);
      log.reset();
      expect(await db.selectFrom('users').select('name').where('id', '=', 1001).executeTakeFirst()).toEqual({ name: 'fresh' });
      expect(where()).toEqual([1, 0, 0]);
    } finally {
      await setReplay(false);
    }
    await dialect.refreshReplicas();
    expect(dialect.replicaStatus().map((s) => [s.lagBytes, s.eligible])).toEqual([[0, true], [0, true]]);
    log.reset();
    expect(await db.selectFrom('users').select('name').where('id', '=', 1001).executeTakeFirst()).toEqual({ name: 'fresh' });
    expect(where()[0]).toBe(0);
  });

  test('read-your-writes: a read after a write in the same context sees it even when replicas lag', async () => {
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 0 });
    await dialect.refreshReplicas();
    const context = new ReadYourWritesContext();
    await setReplay(true);
    try {
      await dialect.refreshReplicas(); // replicas stay eligible: the lag is far below 16 MiB
      expect(dialect.replicaStatus().every((s) => s.eligible)).toBe(true);

      // Without a context the read goes to a lagging replica and misses the write: the guarantee is not free.
      await db.insertInto('users').values({ id: 2001, name: 'mine' }).execute();
      log.reset();
      expect(await db.selectFrom('users').selectAll().where('id', '=', 2001).executeTakeFirst()).toBeUndefined();
      expect(where()[0]).toBe(0);

      const seen = await dialect.readYourWrites(async () => {
        await db.insertInto('users').values({ id: 2002, name: 'also mine' }).execute();
        await db.transaction().execute((trx) => trx.updateTable('users').set({ name: 'mine, renamed' }).where('id', '=', 2002).execute());
        log.reset();
        return db.selectFrom('users').select('name').where('id', '=', 2002).executeTakeFirst();
      }, context);
      expect(seen).toEqual({ name: 'mine, renamed' });
      expect(where()).toEqual([1, 0, 0]);

      // Carried to another request as JSON, the context keeps the guarantee.
      const saved = JSON.parse(JSON.stringify(context)) as Record<string, string>;
      expect(Object.keys(saved)).toEqual([shard.id]);
      log.reset();
      const later = await dialect.readYourWrites(() => db.selectFrom('users').select('name').where('id', '=', 2002).executeTakeFirst(), new ReadYourWritesContext(saved));
      expect(later).toEqual({ name: 'mine, renamed' });
      expect(where()).toEqual([1, 0, 0]);
    } finally {
      await setReplay(false);
    }
    // Once the replicas replayed past the write, the same context reads from them again.
    await dialect.refreshReplicas();
    log.reset();
    expect(await dialect.readYourWrites(() => db.selectFrom('users').select('name').where('id', '=', 2002).executeTakeFirst(), context)).toEqual({ name: 'mine, renamed' });
    expect(where()[0]).toBe(0);
  });

  test('a replica that goes down is skipped: failed reads retry on the primary, and it returns after a good check', async () => {
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 0 });
    await dialect.refreshReplicas();
    const down = cluster.shards[0]!.replicas[0]!;
    await down.stop();
    try {
      const names: string[] = [];
      for (let id = 1; id <= 10; id++) names.push((await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow()).name);
      expect(names).toHaveLength(10);
      const status = dialect.replicaStatus();
      expect(status[0]).toMatchObject({ healthy: false, eligible: false });
      expect(status[0]!.problem).not.toBeNull();
      expect(status[1]).toMatchObject({ healthy: true, eligible: true });
      log.reset();
      for (let id = 1; id <= 5; id++) await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow();
      expect(where()).toEqual([0, 0, 5]);
    } finally {
      await down.start();
    }
    await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
    await dialect.refreshReplicas();
    expect(dialect.replicaStatus().map((s) => s.eligible)).toEqual([true, true]);
  });

  test('reads a standby refuses as writes, and reads marked withPrimary(), run on the primary', async () => {
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 0 });
    await dialect.refreshReplicas();
    // A locking clause inside a subquery: the standby refuses it (25006) and the read runs again on the primary.
    const locked = await db
      .selectFrom((qb) => qb.selectFrom('users').selectAll().where('id', '=', 5).forUpdate().as('u'))
      .select('name')
      .where('u.id', '=', 5)
      .execute();
    expect(locked).toEqual([{ name: 'user 5' }]);
    const [primary] = where();
    expect(primary).toBe(1);
    // An advisory lock succeeds on a standby, where it guards nothing: withPrimary() takes it on the primary.
    log.reset();
    const onPrimary = db.withPlugin(withPrimary());
    const got = await onPrimary.selectFrom('users').select(sql<boolean>`pg_try_advisory_lock(42)`.as('locked')).where('id', '=', 6).executeTakeFirstOrThrow();
    expect(got.locked).toBe(true);
    expect(where()).toEqual([1, 0, 0]);
    await onPrimary.selectFrom('users').select(sql<boolean>`pg_advisory_unlock(42)`.as('unlocked')).where('id', '=', 6).execute();
  });

  test('a streamed write inside read-your-writes is seen by the next read', async () => {
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 0 });
    await dialect.refreshReplicas();
    await setReplay(true);
    try {
      await dialect.refreshReplicas();
      const seen = await dialect.readYourWrites(async () => {
        for await (const row of db.insertInto('users').values({ id: 3001, name: 'streamed' }).returning('id').stream()) expect(row).toEqual({ id: 3001 });
        log.reset();
        return db.selectFrom('users').select('name').where('id', '=', 3001).executeTakeFirst();
      });
      expect(seen).toEqual({ name: 'streamed' });
      expect(where()).toEqual([1, 0, 0]);
    } finally {
      await setReplay(false);
    }
  });

  test('a replica that stops in the middle of a read: the read finishes on the primary and the process survives', async () => {
    // Only replica 0 in this topology, so the read certainly starts there.
    const one = createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: [shard.replicaUrls[0]!] }] });
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 0 }, { topology: one, createPool: undefined });
    await dialect.refreshReplicas();
    const replica = cluster.shards[0]!.replicas[0]!;
    const slow = db.selectFrom('users').select(['name', sql<string>`pg_sleep(1)::text`.as('slept')]).where('id', '=', 7).executeTakeFirstOrThrow();
    await eventually('the read running on the replica', async () =>
      withPg(replica.url, async (c) => (await c.query("select 1 from pg_stat_activity where query like '%pg_sleep(1)%' and pid <> pg_backend_pid()")).rowCount === 1),
    );
    await replica.stop();
    try {
      expect((await slow).name).toBe('user 7');
      expect(dialect.replicaStatus()[0]).toMatchObject({ healthy: false, eligible: false });
    } finally {
      await replica.start();
      await waitForReplay(shard.primaryUrl, replica.url);
    }
  });

  test('a replica that stops answering fails its check within checkTimeoutMillis and serves no reads', async () => {
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 0, checkTimeoutMillis: 300 });
    await dialect.refreshReplicas();
    const replica = cluster.shards[0]!.replicas[0]!;
    // Freeze the server and every backend it runs: connections stay open, nothing answers.
    const pids = [replica.pid!, ...execFileSync('pgrep', ['-P', String(replica.pid)]).toString().trim().split(/\s+/).map(Number)];
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    try {
      const started = performance.now();
      await dialect.refreshReplicas();
      expect(performance.now() - started).toBeLessThan(3000);
      expect(dialect.replicaStatus()[0]).toMatchObject({ healthy: false, eligible: false, state: 'unreachable' });
      // The problem names the shard and the server, and says why.
      expect(dialect.replicaStatus()[0]!.problem).toBe(`Replica ${dialect.replicaStatus()[0]!.server} of shard "${shard.id}" does not answer: no answer within 300 ms`);
      log.reset();
      for (let id = 1; id <= 4; id++) await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow();
      expect(where()).toEqual([0, 0, 4]);
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    }
    await dialect.refreshReplicas();
    expect(dialect.replicaStatus().map((s) => s.eligible)).toEqual([true, true]);
  });

  test('a process that never destroys its dialect still exits: lag checks keep nothing alive', async () => {
    // Generous: starting tsx and a first replica check take seconds on a loaded 2-core machine.
    const { stdout, stderr, code, signal } = await runTsxScript(
      `import { Kysely } from ${JSON.stringify(require.resolve('kysely'))};
import { ShardedDialect } from ${srcModule('sharding/dialect/sharded-dialect')};
import { createTopology } from ${srcModule('cluster/topology')};
const topology = createTopology(${JSON.stringify({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] })});
const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, replicas: { readFrom: 'replica', lagCheckIntervalMillis: 50 } });
const db = new Kysely<any>({ dialect });
void db.selectFrom('users').select('name').where('id', '=', 1).execute().then(() => process.stdout.write('read\\n'));
`,
      45_000,
    );
    expect({ stdout, code, signal, stderr: stderr.slice(0, 2000) }).toEqual({ stdout: 'read\n', code: 0, signal: null, stderr: '' });
  }, 50_000);

  test('in db.connection(), reads after raw SQL stay on the primary, where the session state lives', async () => {
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 0 });
    await dialect.refreshReplicas();
    const names = await db.connection().execute(async (conn) => {
      const before = await conn.selectFrom('users').select(sql<string>`current_setting('application_name')`.as('app')).where('id', '=', 8).executeTakeFirstOrThrow();
      await sql`set application_name = 'session-state'`.execute(conn.withPlugin(withShard(shard.id)));
      const after = await conn.selectFrom('users').select(sql<string>`current_setting('application_name')`.as('app')).where('id', '=', 8).executeTakeFirstOrThrow();
      await sql`reset application_name`.execute(conn.withPlugin(withShard(shard.id)));
      return [before.app, after.app];
    });
    expect(names[0]).not.toBe('session-state');
    expect(names[1]).toBe('session-state'); // read on the client the SET ran on
    // Released, the connection forgets: the next read may use a replica again.
    log.reset();
    await db.selectFrom('users').select('name').where('id', '=', 8).execute();
    expect(where()[0]).toBe(0);
  });

  test('a response-time strategy learns from every replica read, and a slow replica loses the reads', async () => {
    const outcomes: { replica: string; ok: boolean }[] = [];
    const ewma = peakEwma();
    const recording: Strategy = {
      name: 'recording peak-ewma',
      pick: (candidates, request) => ewma.pick(candidates, request),
      onComplete: (instance, outcome) => {
        outcomes.push({ replica: instance.id, ok: outcome.ok });
        ewma.onComplete!(instance, outcome);
      },
    };
    // Replica 0's real client answers 100 ms late (a wrapped client, as a slow network would).
    const slowUrl = shard.replicaUrls[0]!;
    const { db, dialect } = connect(
      { readFrom: 'replica', lagCheckIntervalMillis: 0, strategy: recording },
      { createPool: (server) => (server.url === slowUrl ? delayedPool(server.url, 100) : countingPool(server.url, log)) },
    );
    await dialect.refreshReplicas();
    const [slow, fast] = dialect.replicaStatus().map((s) => s.server) as [string, string];
    for (let id = 1; id <= 30; id++) await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow();
    expect(outcomes).toHaveLength(30);
    expect(outcomes.every((o) => o.ok)).toBe(true);
    expect(outcomes.filter((o) => o.replica === slow).length).toBeLessThanOrEqual(2);
    expect(outcomes.filter((o) => o.replica === fast).length).toBeGreaterThanOrEqual(28);
  });
});

describe('read-your-writes under load', () => {
  test('20 callers writing and reading back while replay stops and starts: no caller ever reads its own write stale', async () => {
    const { db, dialect } = connect({ readFrom: 'replica', lagCheckIntervalMillis: 20 });
    const callers = 20;
    const rounds = 40;
    const ids = Array.from({ length: callers }, (_, i) => 5000 + i);
    await db.insertInto('users').values(ids.map((id) => ({ id, name: '0' }))).execute();
    await dialect.refreshReplicas();
    // Replay stops and starts under the callers' feet, on both replicas.
    let toggling = true;
    const toggler = (async () => {
      for (let paused = true; toggling; paused = !paused) {
        for (const url of shard.replicaUrls) await withPg(url, (c) => c.query(paused ? 'select pg_wal_replay_pause()' : 'select pg_wal_replay_resume()'));
        await dialect.refreshReplicas();
      }
      for (const url of shard.replicaUrls) await withPg(url, (c) => c.query('select pg_wal_replay_resume()'));
    })();
    let stale = 0;
    let reads = 0;
    log.reset();
    let writersDone = false;
    try {
      // Readers that wrote nothing have no position to wait for: replicas serve them meanwhile.
      const readers = Array.from({ length: 5 }, async (_, i) => {
        while (!writersDone) await db.selectFrom('users').select('name').where('id', '=', ids[i]!).executeTakeFirstOrThrow();
      });
      await Promise.all(
        ids.map((id) =>
          dialect.readYourWrites(async () => {
            for (let k = 1; k <= rounds; k++) {
              await db.updateTable('users').set({ name: String(k) }).where('id', '=', id).execute();
              const row = await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow();
              reads++;
              if (Number(row.name) < k) stale++;
            }
          }),
        ),
      ).finally(() => (writersDone = true));
      await Promise.all(readers);
    } finally {
      toggling = false;
      await toggler;
    }
    const onReplicas = where().slice(1).reduce((a, b) => a + b, 0);

    // The same read without a context, replay paused: stale every time, so the count above could fail.
    for (const url of shard.replicaUrls) await withPg(url, (c) => c.query('select pg_wal_replay_pause()'));
    let staleWithoutContext = 0;
    try {
      await dialect.refreshReplicas();
      for (const id of ids) {
        await db.updateTable('users').set({ name: 'after' }).where('id', '=', id).execute();
        const row = await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow();
        if (row.name !== 'after') staleWithoutContext++;
      }
    } finally {
      await setReplay(false);
    }
    expect({ stale, reads }).toEqual({ stale: 0, reads: callers * rounds });
    expect(onReplicas).toBeGreaterThan(0); // replicas stayed in service throughout
    expect(staleWithoutContext).toBe(callers);
  }, 60_000);
});

/** A real pg pool whose statements (not its lag checks' replies, which share the delay) resolve `millis` late. */
function delayedPool(url: string, millis: number): PoolLike {
  return interceptingPool(url, () => undefined, millis);
}
