/**
 * The capture trigger on a move's source, on real PostgreSQL: it logs a write only when the key's
 * slot is in `kysely_scale.slot_move` (the slot is computed in the trigger, for integer and text
 * keys, as the TypeScript slotOf computes it), refuses writes to fenced slots with KS002, skips
 * NULL keys, and its install refuses when `slot_move` holds a slot it was not written for. A
 * move's fence is one row (raised, read and lowered whatever the number of slots), and raising it
 * lists the transactions older than it in the same round trip. The
 * guard replaces a murmur3 installed by an earlier version (a loop of helper calls with a SET
 * clause) by the current one, which has none, and a write gate that does not set up the slot hash
 * at a session's first write by one that does.
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { dropCapture, installCapture, installGuard, runDdl } from '../../../src/admin/mover/shard-guard';
import { captureTriggerSql, fenceSlot } from '../../../src/admin/mover/shard-guard-sql';
import { lowerFence, raiseFence, waitForOlderTransactions } from '../../../src/admin/mover/slot-fence';
import { slotOf } from '../../../src/cluster/slot-hash';
import { SLOT_FENCED_SQLSTATE } from '../../../src/cluster/topology-fence';
import { MoveFailedError } from '../../../src/admin/mover/mover-errors';
import { ErrorCodes } from '../../../src/kernel/errors';

const SLOTS = 64;
let cluster: TestCluster;
let client: Client;
let url: string;

const TABLES = [
  { name: 'accounts', keyColumn: 'id', keyType: 'bigint' },
  { name: 'notes', keyColumn: 'owner', keyType: 'text' },
];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('capture_trigger');
  url = shard!.primaryUrl;
  client = directClient(url);
  await client.connect();
  await client.query('create table accounts (id bigint primary key, v int not null default 0)');
  await client.query('create table notes (owner text, body text)');
  await installGuard(client, 's0', TABLES, SLOTS);
}, 60_000);

afterAll(async () => {
  await client?.end();
  await cluster?.stop();
});

async function logged(): Promise<string[]> {
  const { rows } = await client.query<{ e: string }>(`select tbl || ':' || key as e from kysely_scale.change_log order by id`);
  return rows.map((r) => r.e);
}

test('only writes to the moving slots are logged, each once, with the key the app wrote (integer and text keys, non-ASCII included)', async () => {
  const moving = [3, 17, 40];
  await client.query(`insert into kysely_scale.slot_move (slot, move_id, next_version) select s, 7, 0 from unnest($1::int[]) s`, [moving]);
  await installCapture(client, TABLES, SLOTS);
  const ids = Array.from({ length: 400 }, (_, i) => i - 50);
  const owners = [...Array.from({ length: 200 }, (_, i) => `owner-${i}`), 'été', '中文', '😀x', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', ''];
  await client.query('insert into accounts (id) select unnest($1::bigint[])', [ids]);
  await client.query(`insert into notes (owner, body) select unnest($1::text[]), 'b'`, [owners]);
  await client.query(`insert into notes (owner, body) values (null, 'no key')`);
  await client.query('update accounts set v = v + 1');
  await client.query('delete from notes');
  const inMoving = (key: number | string): boolean => moving.includes(slotOf(key, SLOTS));
  const idsMoving = ids.filter(inMoving).map(String);
  const ownersMoving = owners.filter(inMoving);
  expect(idsMoving.length).toBeGreaterThan(5);
  expect(ownersMoving.length).toBeGreaterThan(3);
  expect(ownersMoving.length).toBeLessThan(owners.length);
  // insert once, update once (the key did not change), delete once
  const expected = [...idsMoving.map((k) => `accounts:${k}`), ...ownersMoving.map((k) => `notes:${k}`), ...idsMoving.map((k) => `accounts:${k}`), ...ownersMoving.map((k) => `notes:${k}`)];
  expect((await logged()).sort()).toEqual(expected.sort());
});

test('a fenced slot refuses the write with KS002 naming the version it waits for; a slot outside the move does not', async () => {
  await client.query(`update kysely_scale.slot_move set fenced_until = clock_timestamp() + interval '1 minute', next_version = 9`);
  const fencedId = Array.from({ length: 1000 }, (_, i) => 10_000 + i).find((id) => slotOf(id, SLOTS) === 17)!;
  const freeId = Array.from({ length: 1000 }, (_, i) => 10_000 + i).find((id) => slotOf(id, SLOTS) === 18)!;
  const refused = await client.query('insert into accounts (id) values ($1)', [fencedId]).then(
    () => undefined,
    (error: { code?: string; detail?: string }) => error,
  );
  expect(refused?.code).toBe(SLOT_FENCED_SQLSTATE);
  expect(JSON.parse(refused!.detail!)).toEqual({ slot: 17, required: 9 });
  await client.query('insert into accounts (id) values ($1)', [freeId]);
  await client.query(`update kysely_scale.slot_move set fenced_until = null`);
});

test("a move's fence row fences all its slots: raised in one round trip that lists the transactions older than it, then lowered", async () => {
  await client.query(`insert into kysely_scale.slot_move (slot, move_id, next_version) values ($1, 7, 0)`, [fenceSlot(7)]);
  const fencedId = Array.from({ length: 1000 }, (_, i) => 20_000 + i).find((id) => slotOf(id, SLOTS) === 40)!;
  const older = directClient(url);
  await older.connect();
  try {
    await older.query('begin');
    await older.query('select 1');
    const fence = await raiseFence(client, 7, 60_000, 12);
    expect(fence.blockers.map((b) => b.pid)).toEqual([(older as unknown as { processID: number }).processID]);
    const { rows } = await client.query<{ n: number }>(`select count(*)::int as n from kysely_scale.slot_move where fenced_until is not null`);
    expect(rows[0]!.n).toBe(1); // the fence row only
    const refused = await client.query('insert into accounts (id) values ($1)', [fencedId]).then(
      () => undefined,
      (error: { code?: string; detail?: string }) => error,
    );
    expect(refused?.code).toBe(SLOT_FENCED_SQLSTATE);
    expect(JSON.parse(refused!.detail!)).toEqual({ slot: 40, required: 12 });
    await older.query('commit');
    expect(await waitForOlderTransactions(client, fence.since, 1000, async () => undefined, () => performance.now())).toEqual([]);
  } finally {
    await older.end();
  }
  await lowerFence(client, 7);
  await client.query('insert into accounts (id) values ($1)', [fencedId]);
  await client.query(`delete from kysely_scale.slot_move where slot = $1`, [fenceSlot(7)]);
});

const CAPTURE = { purpose: 'install the change capture', tables: ['accounts'] };

test('the install refuses when slot_move holds a slot the trigger would skip', async () => {
  await expect(runDdl(client, captureTriggerSql(TABLES[0]!, SLOTS, [3, 17]), CAPTURE)).rejects.toThrow(/slot_move changed/);
  await runDdl(client, captureTriggerSql(TABLES[0]!, SLOTS, [3, 17, 40, 41]), CAPTURE);
});

test('DDL that never gets its lock fails with E_MOVE_FAILED naming the shard and the transaction holding the table, not a bare 55P03', async () => {
  const holder = directClient({ connectionString: url, application_name: 'report job' });
  await holder.connect();
  try {
    await holder.query('begin');
    await holder.query('select count(*) from accounts'); // an open transaction that read the table
    const failure = await runDdl(client, captureTriggerSql(TABLES[0]!, SLOTS, [3, 17, 40, 41]), CAPTURE, 3).then(
      () => undefined,
      (error: unknown) => error as MoveFailedError,
    );
    const pid = (holder as unknown as { processID: number }).processID;
    expect(failure).toBeInstanceOf(MoveFailedError);
    expect(failure).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { shard: 's0', tables: ['accounts'], pids: [pid], sqlState: '55P03' } });
    expect(failure!.message).toContain(`backend ${pid} "report job" idle in transaction`);
    expect(failure!.message).toMatch(/^Could not install the change capture on shard "s0": the lock it needs on "accounts" stayed taken for 3 attempts/);
  } finally {
    await holder.query('rollback');
    await holder.end();
  }
  await runDdl(client, captureTriggerSql(TABLES[0]!, SLOTS, [3, 17, 40, 41]), CAPTURE, 3);
});

test('installGuard writes the replica identity when the shard has none (as the operator: app roles usually may not) and keeps one that exists', async () => {
  await client.query('drop table kysely_scale.replica_identity');
  await installGuard(client, 's0', TABLES, SLOTS);
  const first = await client.query<{ shard_id: string; token: string }>('select shard_id, token from kysely_scale.replica_identity');
  expect(first.rows.map((r) => r.shard_id)).toEqual(['s0']);
  await installGuard(client, 's0', TABLES, SLOTS);
  expect((await client.query('select shard_id, token from kysely_scale.replica_identity')).rows).toEqual(first.rows);
});

test('installGuard replaces a murmur3 of an earlier version (SET clause) with the current one', async () => {
  await client.query('alter function public.kysely_scale_murmur3(bytea) set search_path = public');
  await installGuard(client, 's0', TABLES, SLOTS);
  const { rows } = await client.query<{ config: string[] | null; slot: number }>(
    `select (select proconfig from pg_proc where oid = 'public.kysely_scale_murmur3'::regproc) as config, kysely_scale_slot('user-42'::text, ${SLOTS}) as slot`,
  );
  expect(rows[0]).toEqual({ config: null, slot: slotOf('user-42', SLOTS) });
});

test("the write gate sets up the slot hash at a session's first write (a move's capture then does not compile it in every app session at once); installGuard upgrades a gate without it", async () => {
  // An earlier version's gate: the version check only.
  await client.query(`create or replace function kysely_scale.write_gate() returns trigger language plpgsql as $gate$ begin perform kysely_scale.check_version(); return null; end $gate$`);
  await installGuard(client, 's0', TABLES, SLOTS);
  const session = directClient(url);
  await session.connect();
  try {
    const ready = async () => (await session.query<{ v: string | null }>(`select current_setting('kysely_scale.hash_ready', true) as v`)).rows[0]!.v;
    expect(await ready()).toBeNull();
    await session.query('insert into accounts (id) values (990001)');
    expect(await ready()).toBe('on');
    // Once: a later write does not call the hash again (the setting stays; nothing else to see).
    await session.query('update accounts set v = v + 1 where id = 990001');
    expect(await ready()).toBe('on');
  } finally {
    await session.query('delete from accounts where id = 990001').catch(() => undefined);
    await session.end();
  }
});

test('a role that may not run the slot hash still writes outside a move (the gate sets the hash up only where allowed)', async () => {
  await client.query(`do $$ begin if not exists (select 1 from pg_roles where rolname = 'no_hash_app') then create role no_hash_app login; end if; end $$`);
  await client.query('grant select, insert, update, delete on accounts to no_hash_app');
  // No move on this shard: no capture trigger, nothing hidden (the earlier tests' moves undone).
  await dropCapture(client, TABLES);
  await client.query('update kysely_scale.shard_guard set hidden = null');
  await client.query('delete from kysely_scale.slot_move');
  await client.query('revoke execute on function public.kysely_scale_murmur3(bytea) from public');
  const app = new URL(url);
  app.username = 'no_hash_app';
  app.password = '';
  const session = directClient(app.toString());
  await session.connect();
  try {
    await session.query('insert into accounts (id) values (990002)');
    expect((await client.query('select count(*)::int as n from accounts where id = 990002')).rows[0].n).toBe(1);
  } finally {
    await session.end();
    await client.query('grant execute on function public.kysely_scale_murmur3(bytea) to public');
    await client.query('delete from accounts where id = 990002');
  }
});
