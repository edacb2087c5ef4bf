/**
 * The mover epoch on one real shard (`mover-epoch.ts`): a raise to a newer epoch refuses every
 * later change of an older one; the raise waits for an older command's transaction that checked
 * its epoch (it holds the row `for share`) to end, and then that command's next change is
 * refused; a raise kept waiting past the mover's lock bound fails naming who keeps it; an equal
 * epoch of another holder is refused; a shard of the previous version gets the holder column.
 */
import type { Client } from 'pg';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession, type ShardSession } from '../../../src/admin/mover/shard-session';
import { beginChecked, bindEpoch, CommandEpoch, installEpoch, queryChecked } from '../../../src/admin/mover/mover-epoch';
import { MoverSupersededError, ShardLockError } from '../../../src/admin/mover/mover-errors';
import { LOCK_WAIT_MILLIS } from '../../../src/admin/mover/lock-blockers';
import { directClient } from '../../support/direct-pool';
import { untilWaitingForLock } from '../../support/lock-waits';
import { within } from './within-deadline';

const SHARD = 'epoch_shard';
let cluster: TestCluster;
let url: string;
let admin: Client;
const sessions: ShardSession[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  url = (await cluster.createDatabase('epoch_raise'))[0]!.primaryUrl;
  admin = directClient(url);
  await admin.connect();
  await admin.query('create table t (id int primary key)');
}, 60_000);

afterAll(async () => {
  for (const s of sessions) s.destroy();
  await admin?.end();
  await cluster?.stop();
});

/** A mover session of the shard bound to a command of `epoch` (statements probed after 1 s without an answer). */
async function commandSession(epoch: bigint): Promise<Client> {
  const s = await openShardSession(url, 5000, { shard: SHARD, deadlines: { statementTimeoutMillis: 1000 } });
  sessions.push(s);
  bindEpoch(s.client, SHARD, new CommandEpoch(epoch));
  return s.client;
}

async function shardEpoch(): Promise<string> {
  return (await admin.query<{ epoch: string }>('select epoch::text as epoch from kysely_scale.mover_epoch')).rows[0]!.epoch;
}

// A test that failed half-way must not leave a transaction holding the row for the next one.
afterEach(() => {
  for (const s of sessions.splice(0)) s.destroy();
});

beforeEach(async () => {
  const c = await commandSession(0n);
  await installEpoch(c);
  await admin.query('update kysely_scale.mover_epoch set epoch = 0, holder = null; delete from t');
});

test('a change of an older epoch after a newer one acted is refused (KS004 as E_MOVE_FAILED, reason superseded); the same epoch goes on', async () => {
  const newer = await commandSession(6n);
  await queryChecked(newer, 'insert into t values (1)');
  expect(await shardEpoch()).toBe('6');
  const older = await commandSession(5n);
  const refused = await queryChecked(older, 'insert into t values (2)').catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(MoverSupersededError);
  expect(refused).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'superseded', shard: SHARD, epoch: '5', shardEpoch: '6', sqlState: 'KS004' } });
  // A transaction of the older epoch is refused at its start, and leaves the session usable.
  await expect(beginChecked(older)).rejects.toBeInstanceOf(MoverSupersededError);
  expect((await older.query<{ one: number }>('select 1 as one')).rows).toEqual([{ one: 1 }]);
  await queryChecked(newer, 'insert into t values (3)');
  expect((await admin.query<{ id: number }>('select id from t order by id')).rows.map((r) => r.id)).toEqual([1, 3]);
  expect(await shardEpoch()).toBe('6');
});

test('the raise waits for an older command\'s open transaction, which commits; that command\'s next change is refused', async () => {
  const older = await commandSession(5n);
  await beginChecked(older);
  await older.query('insert into t values (1)');
  const newer = await commandSession(6n);
  const raised = queryChecked(newer, 'insert into t values (2)');
  await untilWaitingForLock(admin, 'select kysely_scale.raise_mover_epoch');
  expect(await shardEpoch()).toBe('5'); // the older command's own raise, before its transaction
  await older.query('commit');
  await within(5000, 'the raise once the older transaction ended', raised);
  expect(await shardEpoch()).toBe('6');
  await expect(queryChecked(older, 'insert into t values (3)')).rejects.toMatchObject({ context: { reason: 'superseded' } });
  // The older change checked before the raise committed before it; none after.
  expect((await admin.query<{ id: number }>('select id from t order by id')).rows.map((r) => r.id)).toEqual([1, 2]);
});

test('a raise kept waiting by an older command\'s transaction fails with ShardLockError once it waited the mover\'s lock bound, and raises nothing', async () => {
  const older = await commandSession(5n);
  await beginChecked(older);
  const newer = await commandSession(6n);
  const started = performance.now();
  const failure = await within(LOCK_WAIT_MILLIS + 5000, 'the raise\'s lock deadline', queryChecked(newer, 'insert into t values (2)').catch((e: unknown) => e));
  expect(failure).toBeInstanceOf(ShardLockError);
  expect(failure).toMatchObject({ code: 'E_MOVE_FAILED', context: { shard: SHARD, sqlState: '55P03' } });
  expect(performance.now() - started).toBeGreaterThanOrEqual(LOCK_WAIT_MILLIS - 100);
  expect(await shardEpoch()).toBe('5');
  await older.query('commit');
  // A failed raise is tried again by the command's next change.
  const again = await commandSession(6n);
  await queryChecked(again, 'insert into t values (4)');
  expect(await shardEpoch()).toBe('6');
}, 30_000);

test('an equal epoch of another holder (a catalog whose sequence went back) is refused, at the raise and at the check', async () => {
  const first = await commandSession(7n);
  await queryChecked(first, 'insert into t values (1)');
  const other = await commandSession(7n); // another CommandEpoch: another holder id
  await expect(queryChecked(other, 'insert into t values (2)')).rejects.toMatchObject({ context: { reason: 'epoch-sequence-behind', epoch: '7', shardEpoch: '7' } });
  // Its check alone (as if its raise had passed) is refused too.
  await expect(other.query(`select kysely_scale.check_mover_epoch(7::bigint, 'another holder')`)).rejects.toMatchObject({ code: 'KS004' });
  // The holder that raised goes on; with the same holder id, a second session of the same command too.
  await queryChecked(first, 'insert into t values (3)');
  const session = await openShardSession(url, 5000, { shard: SHARD });
  sessions.push(session);
  const same = session.client;
  const holder = (await admin.query<{ h: string }>('select holder as h from kysely_scale.mover_epoch')).rows[0]!.h;
  bindEpoch(same, SHARD, new CommandEpoch(7n, holder));
  await queryChecked(same, 'insert into t values (4)');
  expect((await admin.query<{ id: number }>('select id from t order by id')).rows.map((r) => r.id)).toEqual([1, 3, 4]);
});

test('a shard installed by the previous version (no holder column, one-argument functions) gets the holder at the first raise and keeps its epoch', async () => {
  await admin.query(`drop function kysely_scale.raise_mover_epoch(bigint, text); drop function kysely_scale.check_mover_epoch(bigint, text);
    alter table kysely_scale.mover_epoch drop column holder; update kysely_scale.mover_epoch set epoch = 4`);
  const older = await commandSession(3n);
  await expect(queryChecked(older, 'insert into t values (1)')).rejects.toMatchObject({ context: { reason: 'superseded', epoch: '3', shardEpoch: '4' } });
  const newer = await commandSession(5n);
  await queryChecked(newer, 'insert into t values (2)');
  expect(await shardEpoch()).toBe('5');
  expect((await admin.query<{ h: string | null }>('select holder as h from kysely_scale.mover_epoch')).rows[0]!.h).toMatch(/^[0-9a-f-]{36}$/);
});
