/**
 * A batch copy and its table lock, on real shards: when the scan cannot lock the source table (a
 * migration queued behind an open transaction), the copy fails with E_MOVE_FAILED naming both
 * backends (pid, application, state, statement with its literals hidden) and the process survives (the target's COPY stream used to emit an unhandled error once the rollback dropped its
 * connection, crashing the CLI); when the target's COPY FROM waits for a lock another session
 * holds, the copy fails once it waited the mover's lock bound, naming that session (ShardLockError:
 * the shard's probe found it waiting, not silent; it was reported as a frozen shard, or waited
 * forever); and a migration queued behind a throttled copy's lock lifts the
 * throttle, so it waits for the rest of the copy at full speed (under 6 s on a loaded machine), not at the throttled pace (20 s).
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { copySlots } from '../../../src/admin/mover/slot-copy';
import { slotSet } from '../../../src/admin/mover/slot-lines';
import { MOVER_APPLICATION_NAME, openShardSession, type ShardSession, type ShardSessionOptions } from '../../../src/admin/mover/shard-session';
import { ShardLockError, ShardSilentError } from '../../../src/admin/mover/mover-errors';
import { LOCK_WAIT_MILLIS } from '../../../src/admin/mover/lock-blockers';
import type { KeyedTable } from '../../../src/admin/mover/table-keys';
import { systemClock } from '../../../src/kernel/clock';
import { untilWaitingForLock } from '../../support/lock-waits';
import { eventually } from '../../support/postgres-replication';
import { within } from './within-deadline';

const ROWS = 40_000;
const SLOTS = 4096;
const users = { name: 'users', keyColumn: 'id', keyType: 'bigint' } as KeyedTable;
let cluster: TestCluster;
let sourceUrl: string;
let targetUrl: string;
let admin: Client;
const sessions: ShardSession[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2, backend: 'local' });
  const [source, target] = await cluster.createDatabase('copy_lock');
  sourceUrl = source!.primaryUrl;
  targetUrl = target!.primaryUrl;
  for (const url of [sourceUrl, targetUrl]) {
    const c = directClient(url);
    await c.connect();
    await c.query('create table users (id bigint primary key, name text)');
    await c.end();
  }
  admin = directClient(sourceUrl);
  await admin.connect();
  await admin.query(`insert into users select g, 'user ' || g from generate_series(1, ${ROWS}) g`);
}, 60_000);

afterAll(async () => {
  for (const s of sessions) s.destroy();
  await admin?.end();
  await cluster?.stop();
});

async function session(url: string, owner?: ShardSessionOptions): Promise<ShardSession> {
  const s = await openShardSession(url, 5000, owner);
  sessions.push(s);
  return s;
}

const pace = { clock: systemClock, niceRatio: 0, sliceMillis: 3, probeSlowMillis: 0 };

test('a copy whose scan cannot lock the source table fails with E_MOVE_FAILED naming the migration and the transaction it waits for, and nothing crashes', async () => {
  const holder = directClient({ connectionString: sourceUrl, application_name: 'report job' });
  const migration = directClient({ connectionString: sourceUrl, application_name: 'schema migration' });
  await holder.connect();
  await migration.connect();
  try {
    await holder.query('begin');
    await holder.query(`select 1 from users where name <> 'tok-Sekret-42' limit 1`);
    const altered = migration.query(`alter table users alter column name set default 'y'`);
    await untilWaitingForLock(admin, 'alter table users');
    const [source, target] = [await session(sourceUrl), await session(targetUrl)];
    const copy = copySlots(source.client, target.client, users, slotSet(undefined, SLOTS), SLOTS, { clock: systemClock, maxRowsPerSecond: undefined, onRows: () => undefined, pace }, false);
    const failure = await copy.then(() => undefined, (error: unknown) => error as Error & { context: Record<string, unknown> });
    const pid = (c: Client): number => (c as unknown as { processID: number }).processID;
    expect(failure).toMatchObject({ code: 'E_MOVE_FAILED', context: { table: '"users"', shard: 'copy_lock', pids: expect.arrayContaining([pid(holder), pid(migration)]) } });
    expect(failure!.message).toMatch(/^The scan of "users" on shard "copy_lock" could not lock it for reading within 5000 ms: /);
    expect(failure!.message).toContain(`backend ${pid(migration)} "schema migration" active`);
    expect(failure!.message).toContain('waiting for its lock on users: "alter table users alter column name set default ?"');
    expect(failure!.message).toContain(`backend ${pid(holder)} "report job" idle in transaction`);
    expect(failure!.message).toContain('holding its lock on users: "select ? from users where name <> ? limit ?"');
    expect(failure!.message).not.toContain('Sekret');
    await holder.query('rollback');
    await altered;
    // The target's copy rolled back: nothing half-written.
    const check = directClient(targetUrl);
    await check.connect();
    expect((await check.query<{ n: number }>('select count(*)::int as n from users')).rows[0]!.n).toBe(0);
    await check.end();
  } finally {
    await holder.end();
    await migration.end();
  }
});

test("a target's COPY FROM waiting for a lock another session holds fails once it waited the mover's lock bound, naming that session, not as a silent shard", async () => {
  const holder = directClient({ connectionString: targetUrl, application_name: 'lock holder' });
  await holder.connect();
  const pid = (c: Client): number => (c as unknown as { processID: number }).processID;
  try {
    await holder.query('begin');
    await holder.query('lock table users in share mode'); // conflicts with the COPY's ROW EXCLUSIVE
    // 1 s deadlines: the target is probed after 1 s without taking a byte, found waiting for the lock, and let wait up to the bound.
    const deadlines = { statementTimeoutMillis: 1000, copyIdleTimeoutMillis: 1000 };
    const [source, target] = [await session(sourceUrl, { shard: 'source', deadlines }), await session(targetUrl, { shard: 'target', deadlines })];
    const started = performance.now();
    const copy = copySlots(source.client, target.client, users, slotSet(undefined, SLOTS), SLOTS, { clock: systemClock, maxRowsPerSecond: undefined, onRows: () => undefined, pace }, false);
    const failure = await within(30_000, 'a copy into a locked table', copy.then(() => undefined, (error: unknown) => error as Error & { context: Record<string, unknown> }));
    const failedAfterMillis = Math.round(performance.now() - started);
    console.log(JSON.stringify({ copyInLocked: { failedAfterMillis, error: failure?.message } }));
    expect(failure).toBeInstanceOf(ShardLockError);
    expect(failure).not.toBeInstanceOf(ShardSilentError);
    expect(failure).toMatchObject({ code: 'E_MOVE_FAILED', context: { shard: 'target', table: 'users', sqlState: '55P03', pids: [pid(holder)] } });
    expect(failure!.message).toMatch(/^Shard "target": (the end of )?a COPY it writes waited \d+\.\d s for a lock on users, kept by backend \d+ "lock holder" idle in transaction/);
    expect(failure!.message).toContain(`backend ${pid(holder)} "lock holder" idle in transaction`);
    expect(failure!.message).toContain('holding its lock on users: "lock table users in share mode"');
    expect(failedAfterMillis).toBeGreaterThanOrEqual(LOCK_WAIT_MILLIS - 100);
    expect(failedAfterMillis).toBeLessThan(LOCK_WAIT_MILLIS + 3000);
    // The target's backend was ended with its session: nothing of the mover stays queued for the lock.
    await eventually('the mover leaves the lock queue', async () => (await admin.query(`select 1 from pg_stat_activity where application_name = $1 and wait_event_type = 'Lock'`, [MOVER_APPLICATION_NAME])).rowCount === 0);
    const queued = directClient(targetUrl);
    await queued.connect();
    try {
      expect((await queued.query(`select count(*)::int as n from pg_stat_activity where application_name = $1 and wait_event_type = 'Lock'`, [MOVER_APPLICATION_NAME])).rows[0].n).toBe(0);
      await holder.query('rollback');
      expect((await queued.query<{ n: number }>('select count(*)::int as n from users')).rows[0]!.n).toBe(0);
    } finally {
      await queued.end();
    }
  } finally {
    await holder.end();
  }
});

test('a migration queued behind a throttled copy lifts the throttle: it waits for the rest of the copy at full speed, not at the throttle\'s pace, and every row is copied', async () => {
  const [source, target] = [await session(sourceUrl), await session(targetUrl)];
  let started!: () => void;
  const copying = new Promise<void>((resolve) => (started = resolve));
  // 2,000 rows/s: 20 s for the table at the throttle's pace.
  const copy = copySlots(source.client, target.client, users, slotSet(undefined, SLOTS), SLOTS, { clock: systemClock, maxRowsPerSecond: 2000, onRows: () => started(), pace }, false);
  await copying;
  const migration = directClient(sourceUrl);
  await migration.connect();
  try {
    const queued = performance.now();
    await migration.query(`alter table users alter column name set default 'z'`);
    const waited = performance.now() - queued;
    console.log(JSON.stringify({ migrationWaitedMillis: Math.round(waited) }));
    expect(await copy).toBe(ROWS);
    expect(waited).toBeLessThan(6000); // the rest of the copy, unthrottled, on a loaded machine; 20 s at the throttle's pace
  } finally {
    await migration.end();
  }
  const check = directClient(targetUrl);
  await check.connect();
  expect((await check.query<{ n: number }>('select count(*)::int as n from users')).rows[0]!.n).toBe(ROWS);
  await check.end();
});
