/**
 * `migrateShards` keeps time on a shard that stops answering mid-migration, as the slot mover does
 * (`statementTimeoutMillis`: a statement late that long has its shard probed from another
 * connection): a shard frozen with SIGSTOP (TCP still acknowledged, no answer) and a shard whose
 * path dropped (a loopback TCP proxy passing none of the server's bytes) fail that shard with a
 * coded error naming it, within a few seconds, the rest handled as after any failure; a statement
 * at work (pg_sleep) runs past the deadline and completes. A migration is held between its
 * statements by a gate the test opens once the fault is in place. A migration waiting for a table
 * lock past the mover's lock bound fails naming who keeps it; the wait for Kysely's own migration
 * lock (another migrate at work) is Kysely's, left to its own lock_timeout. Two servers, no
 * replicas; every test its own database; the URLs carry a password (trust auth ignores it) to
 * check it is hidden.
 */
import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { migrateShards, type ShardMigrationResultSet, type ShardTarget } from '../../../src/admin/shard-migrations';
import { ShardLockError, ShardSilentError } from '../../../src/admin/mover/mover-errors';
import { LOCK_WAIT_MILLIS } from '../../../src/admin/mover/lock-blockers';
import { eventually } from '../../support/postgres-replication';
import { untilWaitingForLock } from '../../support/lock-waits';
import { ErrorCodes } from '../../../src/kernel/errors';
import { freeze } from '../replication/replication-fault-fixture';
import { expectBackendGone, within } from '../mover/within-deadline';

const PASSWORD = 'Mig_S3cret_pw';
let cluster: TestCluster;
const proxies: TcpProxy[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2, backend: 'local' });
}, 60_000);

afterAll(async () => {
  for (const proxy of proxies) await proxy.close();
  await cluster?.stop();
});

function withPassword(url: string): string {
  const u = new URL(url);
  u.password = PASSWORD;
  return u.toString();
}

async function shardsOf(database: string): Promise<ShardTarget[]> {
  return (await cluster.createDatabase(database)).map((s) => ({ id: s.id, url: withPassword(s.primaryUrl) }));
}

async function query<R extends Record<string, unknown>>(url: string, text: string): Promise<R[]> {
  const client: Client = directClient({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

/** A one-shot signal: `wait()` resolves once `open()` ran. */
function latch(): { open(): void; wait(): Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, wait: () => opened };
}

/**
 * One migration, `0001_gated`: creates table gated, tells `reached`, waits for `gate` (the fault is
 * put in place meanwhile, its transaction idle), then inserts a row: the statement the fault meets.
 */
function gatedProvider(reached: { open(): void }, gate: { wait(): Promise<void> }): MigrationProvider {
  const migration: Migration = {
    async up(db: Kysely<any>) {
      await sql`create table gated (id int)`.execute(db);
      reached.open();
      await gate.wait();
      await sql`insert into gated values (1)`.execute(db);
    },
  };
  return { getMigrations: async () => ({ '0001_gated': migration }) };
}

const openGate = { wait: () => Promise.resolve() };

/** The fault's shard failed with a ShardSilentError naming it, its password hidden; the other shard skipped, its standing read. */
function expectSilentShard(outcome: ShardMigrationResultSet, shards: ShardTarget[], finding: RegExp): ShardSilentError {
  expect(outcome.failedShard).toBe(shards[0]!.id);
  const [failed, skipped] = outcome.shards;
  expect(failed).toMatchObject({ shardId: shards[0]!.id, status: 'failed', server: expect.stringContaining(':***@') });
  expect(failed!.error).toBe(outcome.error);
  expect(failed!.results?.map((r) => [r.migrationName, r.status])).toEqual([['0001_gated', 'Error']]);
  const error = failed!.error as ShardSilentError;
  expect(error).toBeInstanceOf(ShardSilentError);
  expect(error).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { shard: shards[0]!.id, option: 'statementTimeoutMillis' } });
  expect(error.message).toMatch(new RegExp(`^Shard "${shards[0]!.id}" did not answer a statement \\("insert into gated .*"\\) within 1000 ms \\(statementTimeoutMillis, --statement-timeout-ms\\), and `));
  expect(error.message).toMatch(finding);
  expect(error.message).toContain("so the shard's migrations of this run rolled back");
  expect(error.message).not.toMatch(/resume|abort/i);
  expect(JSON.stringify(outcome.shards.map((s) => s.server)) + error.message).not.toContain(PASSWORD);
  expect(skipped).toMatchObject({ shardId: shards[1]!.id, status: 'skipped', current: null, pending: ['0001_gated'] });
  return error;
}

/** After the fault: the failed shard's migration rolled back (the migration table empty, no table gated); a re-run migrates both. */
async function expectRerunCompletes(shards: ShardTarget[], direct: string): Promise<void> {
  expect(await query(direct, "select to_regclass('gated') as t")).toEqual([{ t: null }]);
  expect(await query(direct, 'select name from kysely_migration')).toEqual([]);
  const again = await within(20_000, 'the re-run', migrateShards({ shards, provider: gatedProvider(latch(), openGate), statementTimeoutMillis: 1000, connectionTimeoutMillis: 2000 }));
  expect(again.error).toBeUndefined();
  expect(again.shards.map((s) => [s.shardId, s.status, s.current, s.pending])).toEqual(shards.map((s) => [s.id, 'migrated', '0001_gated', []]));
  for (const url of [direct, shards[1]!.url]) {
    expect(await query(url, 'select name from kysely_migration')).toEqual([{ name: '0001_gated' }]);
    expect(await query(url, 'select id from gated')).toEqual([{ id: 1 }]);
  }
}

test('a shard frozen mid-migration fails with ShardSilentError naming it within a few seconds; after SIGCONT a re-run completes', async () => {
  const shards = await shardsOf('mig_frozen');
  const reached = latch();
  const gate = latch();
  const running = migrateShards({ shards, provider: gatedProvider(reached, gate), statementTimeoutMillis: 1000, connectionTimeoutMillis: 1000 });
  await within(10_000, 'the migration starting', reached.wait());
  const thaw = freeze(cluster.shards[0]!.primary);
  const frozenAt = performance.now();
  let outcome: ShardMigrationResultSet;
  try {
    gate.open();
    // The deadline (1 s), the probe's new connection unanswered (1 s), the standing's login (1 s), closing (≤ 1 s).
    outcome = await within(8000, 'migrateShards on a frozen shard', running);
  } finally {
    thaw();
  }
  const failedAfterMillis = Math.round(performance.now() - frozenAt);
  console.log(JSON.stringify({ migrateFrozen: { failedAfterMillis, error: (outcome.error as Error | undefined)?.message } }));
  expect(failedAfterMillis).toBeLessThan(6000);
  const error = expectSilentShard(outcome, shards, /a new connection to it failed too \(no answer to the login in 1000 ms\)/);
  // The standing of a frozen shard could not be read.
  expect(outcome.shards[0]!.current).toBeUndefined();
  // Thawed, the backend finds its client gone and ends: its transaction rolls back, Kysely's migration lock goes with it.
  await expectBackendGone(shards[0]!.url, error.context.pid as number);
  await expectRerunCompletes(shards, shards[0]!.url);
}, 60_000);

test('a statement at work past the deadline (pg_sleep(3), statementTimeoutMillis 1000) completes; no mover session settings', async () => {
  const [shard] = await shardsOf('mig_long');
  const seen: { bypass: string | null; app: string }[] = [];
  const provider: MigrationProvider = {
    getMigrations: async () => ({
      '0001_slow': {
        async up(db: Kysely<any>) {
          const { rows } = await sql<{ bypass: string | null; app: string }>`select current_setting('kysely_scale.bypass', true) as bypass, current_setting('application_name') as app`.execute(db);
          seen.push(...rows);
          await sql`select pg_sleep(3)`.execute(db);
          await sql`create table slow (id int)`.execute(db);
        },
      },
    }),
  };
  const started = performance.now();
  const outcome = await within(20_000, 'a slow migration', migrateShards({ shards: [shard!], provider, statementTimeoutMillis: 1000 }));
  const tookMillis = Math.round(performance.now() - started);
  console.log(JSON.stringify({ migrateLongStatement: { tookMillis, error: (outcome.error as Error | undefined)?.message ?? null } }));
  expect(outcome.error).toBeUndefined();
  expect(outcome.shards[0]).toMatchObject({ status: 'migrated', current: '0001_slow', pending: [] });
  expect(tookMillis).toBeGreaterThanOrEqual(3000);
  expect(seen).toEqual([{ bypass: null, app: 'kysely-scale migrate' }]);
}, 60_000);

test('a path that drops mid-migration (no reply comes back) fails the shard within a few seconds; its backend is ended; a re-run completes', async () => {
  const shards = await shardsOf('mig_path');
  const direct = shards[0]!.url;
  const proxy = await startTcpProxy(Number(new URL(direct).port));
  proxies.push(proxy);
  const viaProxy = new URL(direct);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  const relayed = [{ id: shards[0]!.id, url: viaProxy.toString() }, shards[1]!];
  const reached = latch();
  const gate = latch();
  const running = migrateShards({ shards: relayed, provider: gatedProvider(reached, gate), statementTimeoutMillis: 1000, connectionTimeoutMillis: 2000 });
  await within(10_000, 'the migration starting', reached.wait());
  proxy.stallReplies(); // the open connection's replies stop; new connections (the probe's) pass
  const droppedAt = performance.now();
  gate.open();
  const outcome = await within(10_000, 'migrateShards on a dropped path', running);
  const failedAfterMillis = Math.round(performance.now() - droppedAt);
  console.log(JSON.stringify({ migratePathDropped: { failedAfterMillis, error: (outcome.error as Error | undefined)?.message } }));
  // The deadline (1 s), then the backend seen idle twice, an interval (100 ms) apart.
  expect(failedAfterMillis).toBeLessThan(4000);
  const error = expectSilentShard(outcome, relayed, /and its backend \(pid \d+\) is idle in transaction, its answer never came: the connection to it was lost/);
  // The standing read over a new connection: nothing executed (the run rolled back).
  expect(outcome.shards[0]).toMatchObject({ current: null, pending: ['0001_gated'] });
  await expectBackendGone(direct, error.context.pid as number);
  await expectRerunCompletes(relayed, direct);
}, 60_000);

test('a migration waiting for a table lock past the lock bound fails with ShardLockError naming the transaction that keeps it', async () => {
  const [shard] = await shardsOf('mig_table_lock');
  await query(shard!.url, 'create table accounts (id int)');
  const app = directClient({ connectionString: shard!.url, application_name: 'long app transaction' });
  await app.connect();
  const watcher = directClient(shard!.url);
  await watcher.connect();
  try {
    await app.query('begin');
    await app.query('select * from accounts'); // keeps ACCESS SHARE until it ends
    const provider: MigrationProvider = { getMigrations: async () => ({ '0001_alter': { up: (db: Kysely<any>) => sql`alter table accounts add column name text`.execute(db).then(() => undefined) } }) };
    const running = migrateShards({ shards: [shard!], provider, statementTimeoutMillis: 1000 });
    await within(10_000, 'the ALTER queued', untilWaitingForLock(watcher, 'alter table accounts'));
    const outcome = await within(LOCK_WAIT_MILLIS + 8000, 'migrateShards behind a lock', running);
    const error = outcome.error as ShardLockError;
    console.log(JSON.stringify({ migrateLockWait: { error: error?.message } }));
    expect(error).toBeInstanceOf(ShardLockError);
    expect(outcome.shards[0]).toMatchObject({ status: 'failed', current: null, pending: ['0001_alter'] });
    expect(outcome.shards[0]!.results?.map((r) => r.status)).toEqual(['Error']);
    expect(error).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { shard: 'shard0', sqlState: '55P03' } });
    expect(error.message).toMatch(/^Shard "shard0": a statement \("alter table accounts .*"\) waited \d+\.\d s for a lock on accounts, kept by .*long app transaction/);
    expect(error.message).toContain(`A migration waits at most ${LOCK_WAIT_MILLIS} ms for a lock`);
    expect(error.message).not.toMatch(/resume|abort/i);
  } finally {
    await app.end();
    await watcher.end();
  }
  // The app's transaction ended, a re-run migrates.
  expect((await migrateShards({ shards: [shard!], provider: { getMigrations: async () => ({ '0001_alter': { up: (db: Kysely<any>) => sql`alter table accounts add column name text`.execute(db).then(() => undefined) } }) } })).error).toBeUndefined();
}, 60_000);

test("a second migrate waiting for Kysely's migration lock past the lock bound is not failed: it runs once the first is done", async () => {
  const [shard] = await shardsOf('mig_kysely_lock');
  const reached = latch();
  const gate = latch();
  const first = migrateShards({ shards: [shard!], provider: gatedProvider(reached, gate), statementTimeoutMillis: 1000 });
  await within(10_000, 'the first migration starting', reached.wait());
  const second = migrateShards({ shards: [shard!], provider: gatedProvider(latch(), openGate), statementTimeoutMillis: 1000 });
  const watcher = directClient(shard!.url);
  await watcher.connect();
  try {
    // The server's own count of the second's wait for the advisory lock passes the mover's lock bound, a second more.
    await eventually(
      'the second migrate waiting past the lock bound',
      async () =>
        (await watcher.query(`select 1 from pg_locks where locktype = 'advisory' and not granted and clock_timestamp() - waitstart > make_interval(secs => $1)`, [(LOCK_WAIT_MILLIS + 1000) / 1000])).rowCount === 1,
      LOCK_WAIT_MILLIS + 10_000,
    );
  } finally {
    await watcher.end();
    gate.open();
  }
  const [one, two] = await within(20_000, 'both migrates', Promise.all([first, second]));
  expect(one!.error).toBeUndefined();
  expect(two!.error).toBeUndefined();
  expect(one!.shards[0]!.results?.map((r) => r.status)).toEqual(['Success']);
  expect(two!.shards[0]).toMatchObject({ status: 'migrated', current: '0001_gated', results: [] });
}, 60_000);

test("waits that queue nobody are work, not lock waits: CREATE INDEX CONCURRENTLY behind an app transaction, and Kysely's lock statement before 0.28.18 (pg_advisory_xact_lock, no lock_timeout), each held past the lock bound, complete", async () => {
  // Review 59: both failed at 5 s with ShardLockError; the concurrent index was left INVALID.
  const [cic] = await shardsOf('mig_wait_cic');
  const [adv] = await shardsOf('mig_wait_advisory');
  await query(cic!.url, 'create table events (id serial primary key, user_id int); insert into events (user_id) select g from generate_series(1, 1000) g');
  const app = directClient({ connectionString: cic!.url, application_name: 'app writer' });
  const holder = directClient({ connectionString: adv!.url, application_name: 'lock holder' });
  await app.connect();
  await holder.connect();
  try {
    await app.query('begin');
    await app.query('insert into events (user_id) values (1)'); // an app write transaction left open
    await holder.query('select pg_advisory_lock(4242)');
    const concurrently: MigrationProvider = { getMigrations: async () => ({ '0001_cic': { up: (db: Kysely<unknown>) => sql`create index concurrently events_user_idx on events (user_id)`.execute(db).then(() => undefined) } }) };
    const oldLock: MigrationProvider = { getMigrations: async () => ({ '0001_lock': { up: (db: Kysely<unknown>) => sql`select pg_advisory_xact_lock(4242)`.execute(db).then(() => undefined) } }) };
    const runs = Promise.all([
      migrateShards({ shards: [cic!], provider: concurrently, disableTransactions: true, statementTimeoutMillis: 1000 }),
      migrateShards({ shards: [adv!], provider: oldLock, statementTimeoutMillis: 1000 }),
    ]);
    // Held until each migration's wait passed the lock bound by the server's own count.
    const waitedPastBound = (url: string) => async () =>
      (await query<{ n: number }>(url, `select count(*)::int as n from pg_locks l join pg_stat_activity a using (pid)
         where not l.granted and a.datname = current_database() and l.waitstart < now() - interval '${LOCK_WAIT_MILLIS + 500} milliseconds'`))[0]!.n > 0;
    await eventually('the concurrent index waiting past the bound', waitedPastBound(cic!.url), 20_000);
    await eventually('the advisory lock waiting past the bound', waitedPastBound(adv!.url), 20_000);
    await app.query('commit');
    await holder.query('select pg_advisory_unlock(4242)');
    const [byIndex, byLock] = await within(20_000, 'the migrations', runs);
    expect(byIndex.error).toBeUndefined();
    expect(byLock.error).toBeUndefined();
    expect(await query(cic!.url, `select indisvalid from pg_index where indexrelid = to_regclass('events_user_idx')`)).toEqual([{ indisvalid: true }]);
  } finally {
    await app.end();
    await holder.end();
  }
}, 60_000);
