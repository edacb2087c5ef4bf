/**
 * The mover epoch drawn from a real catalog's operator lock (review 76): a catalog whose sequence
 * cannot be drawn (its schema missing: `OperatorEpoch.draw()` resolves undefined) fails the command
 * with reason `no-epoch` before it changes anything, rather than letting it change shards unchecked
 * (R1); an operator role with only USAGE on `operator_epoch` (enough to draw) whose raise is
 * refused is told whether the catalog's sequence is behind the shards, or, when that cannot be
 * read, says so rather than silently reporting a takeover (R2).
 */
import type { Client } from 'pg';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession, type ShardSession } from '../../../src/admin/mover/shard-session';
import { bindEpoch, CommandEpoch, installEpoch, queryChecked } from '../../../src/admin/mover/mover-epoch';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { directClient } from '../../support/direct-pool';

const SHARD = 'epoch_source_shard';
const ROLE = 'epoch_source_usage_only';
let cluster: TestCluster;
let shardUrl: string;
let catalogUrl: string;
let shardAdmin: Client;
let catalogAdmin: Client;
const sessions: ShardSession[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  shardUrl = (await cluster.createDatabase('epoch_source'))[0]!.primaryUrl;
  catalogUrl = (await cluster.createDatabase('epoch_source_catalog'))[0]!.primaryUrl;
  shardAdmin = directClient(shardUrl);
  await shardAdmin.connect();
  await shardAdmin.query('create table t (id int primary key)');
  catalogAdmin = directClient(catalogUrl);
  await catalogAdmin.connect();
  // The test cluster's databases come with the kysely_scale schema: this catalog starts without it (not installed).
  await catalogAdmin.query('drop schema if exists kysely_scale cascade');
}, 60_000);

afterAll(async () => {
  for (const s of sessions) s.destroy();
  await catalogAdmin?.query(`drop schema if exists kysely_scale cascade; drop role if exists ${ROLE}`).catch(() => undefined);
  await shardAdmin?.end();
  await catalogAdmin?.end();
  await cluster?.stop();
});

/** A mover session of the shard bound to `command`. */
async function commandSession(command: CommandEpoch): Promise<Client> {
  const s = await openShardSession(shardUrl, 5000, { shard: SHARD, deadlines: { statementTimeoutMillis: 1000 } });
  sessions.push(s);
  await installEpoch(s.client);
  bindEpoch(s.client, SHARD, command);
  return s.client;
}

/** Runs an insert of `id` on the shard as a command holding `url`'s operator lock (the real OperatorEpoch). */
async function insertUnderLock(url: string, id: number): Promise<unknown> {
  const catalog = new TopologyCatalog({ url });
  try {
    return await catalog.withOperatorLock(async (_lost, _confirm, epoch) => {
      const client = await commandSession(new CommandEpoch(epoch));
      return queryChecked(client, `insert into t values (${id})`).then(() => 'landed', (error: unknown) => error);
    });
  } finally {
    await catalog.close();
  }
}

const rows = async (): Promise<number[]> => (await shardAdmin.query<{ id: number }>('select id from t order by id')).rows.map((r) => r.id);

test('R1: a catalog whose epoch sequence has no schema: the command fails with no-epoch and changes nothing (it ran unchecked before)', async () => {
  await commandSession(new CommandEpoch(0n)); // installs the shard's epoch row
  await shardAdmin.query(`update kysely_scale.mover_epoch set epoch = 9, holder = 'newer'`);
  const outcome = await insertUnderLock(catalogUrl, 1);
  expect(outcome).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'no-epoch', sequence: '"kysely_scale"."operator_epoch"' } });
  expect((outcome as Error).message).toMatch(/operator_epoch sequence .* could not be drawn.*Install or migrate the catalog.*Nothing was changed/);
  expect(await rows()).toEqual([]);
  expect((await shardAdmin.query<{ e: string }>('select epoch::text as e from kysely_scale.mover_epoch')).rows[0]!.e).toBe('9');
});

test('R2: a role with only USAGE on operator_epoch, refused by a shard ahead of the sequence: the refusal does not silently blame a takeover', async () => {
  await catalogAdmin.query(`create schema kysely_scale; create sequence kysely_scale.operator_epoch;
    do $$ begin if not exists (select 1 from pg_roles where rolname = '${ROLE}') then create role ${ROLE} login; end if; end $$;
    grant usage on schema kysely_scale to ${ROLE}; grant usage on sequence kysely_scale.operator_epoch to ${ROLE}`);
  // The shard holds epoch 100 (the catalog restored from a backup after it was raised); the sequence draws 1.
  await shardAdmin.query(`update kysely_scale.mover_epoch set epoch = 100, holder = 'before-restore'`);
  const asRole = new URL(catalogUrl);
  asRole.username = ROLE;
  asRole.password = '';
  const outcome = await insertUnderLock(asRole.toString(), 2);
  expect(outcome).toMatchObject({ code: 'E_MOVE_FAILED', context: { epoch: '1', shardEpoch: '100' } });
  // latest() reads pg_sequence_last_value (USAGE suffices): the sequence is behind the shard, said with its fix.
  expect(outcome).toMatchObject({ context: { reason: 'epoch-sequence-behind', fix: `select setval('"kysely_scale"."operator_epoch"', 100)` } });
  expect(await rows()).toEqual([]);
});
