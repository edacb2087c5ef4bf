/**
 * A scatter's shard statement, on real shards: the types the merge compares by come from each
 * shard's row description (no `pg_typeof` column), and a statement that repeats runs as a prepared
 * statement (checked in `pg_prepared_statements` of the shard's one pooled connection), which
 * survives a schema change that alters its result columns and a connection that lost it.
 */
import { CompiledQuery, Kysely, sql } from 'kysely';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { onShard } from '../../../src/sharding/routing/route-hint';
import { ErrorCodes } from '../../../src/kernel/errors';
import { directClient } from '../../support/direct-pool';
import Cursor from 'pg-cursor';
import { installGuard } from '../../../src/admin/mover/shard-guard';
import { createTopology } from '../../../src/cluster/topology';
import { quietPool, startShardedFixture, startSingleDatabase, type ShardedFixture } from './sharded-fixture';

interface DB {
  events: { id: number; user_id: number; at: Date; cents: number; label: string };
}

let f: ShardedFixture;
let single: Kysely<DB>;
let sharded: Kysely<DB>;
const SCHEMA = [
  `create domain cents as int check (value >= 0)`,
  `create table events (id int primary key, user_id int not null, at timestamptz not null, cents cents not null, label text not null)`,
];

/** Runs `statement` on every shard's primary (and, with `alsoSingle`, on the reference database). */
async function onEveryShard(statement: string, alsoSingle = true): Promise<void> {
  if (alsoSingle) await sql.raw(statement).execute(single);
  for (const shard of f.shards) {
    const pool = quietPool(shard.primaryUrl, 1);
    await pool.query(statement);
    await pool.end();
  }
}

beforeAll(async () => {
  f = await startShardedFixture('scatter_prepared', {}, 3);
  single = (await startSingleDatabase(f.cluster, 'scatter_prepared_single')) as unknown as Kysely<DB>;
  // One pooled connection per shard, so its pg_prepared_statements is the dialect's.
  sharded = new Kysely<DB>({ dialect: new ShardedDialect({ topology: f.topology, shardKeys: { events: 'user_id' }, keylessPolicy: { events: 'scatter' }, pool: { max: 1 } }) });
  for (const statement of SCHEMA) await onEveryShard(statement);
  // Timestamps that differ below a millisecond, domain values, text.
  const rows = Array.from({ length: 90 }, (_, i) => ({
    id: i + 1,
    user_id: i + 1,
    at: sql<Date>`timestamptz '2026-01-01 00:00:00' + ${(i * 7) % 40} * interval '1 microsecond'`,
    cents: (i * 13) % 50,
    label: `l${i % 7}`,
  }));
  await single.insertInto('events').values(rows).execute();
  await sharded.insertInto('events').values(rows).execute();
}, 120_000);

afterAll(async () => {
  await sharded?.destroy();
  await single?.destroy();
  await f?.close();
});

const ordered = (db: Kysely<DB>, limit: number) => db.selectFrom('events').select(['id', 'at', 'cents']).orderBy('at', 'desc').orderBy('cents').orderBy('id').limit(limit);

/** The statements prepared on each shard's pooled connection (the dialect's pool holds one). */
async function preparedOnShards(): Promise<string[][]> {
  const query = CompiledQuery.raw(`select statement from pg_prepared_statements where name like 'kysely\\_scale\\_%' order by statement`);
  return Promise.all(f.shards.map(async (shard) => (await sharded.executeQuery<{ statement: string }>(onShard(query, shard.id))).rows.map((r) => r.statement)));
}

test('types come from the row description: microseconds and a domain order as one database, with no type columns', async () => {
  for (const limit of [5, 17, 90]) expect(await ordered(sharded, limit).execute()).toEqual(await ordered(single, limit).execute());
  const grouped = (db: Kysely<DB>) => db.selectFrom('events').select((eb) => ['cents', eb.fn.countAll().as('n'), eb.fn.max('at').as('last')]).groupBy('cents').orderBy('cents');
  expect(await grouped(sharded).execute()).toEqual(await grouped(single).execute());
  const distinct = (db: Kysely<DB>) => db.selectFrom('events').select('at').distinct().orderBy('at');
  expect(await distinct(sharded).execute()).toEqual(await distinct(single).execute());
});

test('the dialect own connections plan every execution of a prepared statement afresh (the slot fence is checked while planning)', async () => {
  for (const shard of f.shards) {
    const { rows } = await sharded.executeQuery<{ plan_cache_mode: string }>(onShard(CompiledQuery.raw('show plan_cache_mode'), shard.id));
    expect(rows).toEqual([{ plan_cache_mode: 'force_custom_plan' }]);
  }
});

test('a scatter that repeats runs as one prepared statement per shard connection; a single run prepares nothing', async () => {
  const once = (db: Kysely<DB>) => db.selectFrom('events').select(['id', 'label']).orderBy('label').orderBy('id').limit(3);
  await once(sharded).execute();
  expect((await preparedOnShards()).flat().filter((s) => s.includes('"label"'))).toEqual([]);
  // A new LIMIT is planned again (the shards run LIMIT n+m), so the statement repeats from its third call.
  for (const limit of [4, 9, 9, 9]) expect(await ordered(sharded, limit).execute()).toEqual(await ordered(single, limit).execute());
  const statements = await preparedOnShards();
  for (const onShardConnection of statements) {
    const mine = onShardConnection.filter((s) => s.includes('order by "at" desc'));
    expect(mine).toHaveLength(1);
    expect(mine[0]).not.toMatch(/pg_typeof/);
  }
});

test('a schema change that alters the result columns: the next call succeeds with the new columns, under a new prepared statement', async () => {
  const all = (db: Kysely<DB>) => db.selectFrom('events').selectAll().orderBy('id').limit(6);
  for (let i = 0; i < 3; i++) expect(await all(sharded).execute()).toEqual(await all(single).execute());
  await onEveryShard(`alter table events add column note text default 'n'`);
  const after = await all(sharded).execute();
  expect(after).toEqual(await all(single).execute());
  expect(after[0]).toHaveProperty('note', 'n');
  // Prepared again under a new name: both the old and the new statement text are on the connection.
  for (let i = 0; i < 2; i++) await all(sharded).execute();
  for (const onShardConnection of await preparedOnShards()) expect(onShardConnection.filter((s) => s.includes('from "events" order by "id" limit')).length).toBe(2);
  await onEveryShard(`alter table events drop column note`);
});

test('prepareScatterStatements: false runs every scatter unnamed; a value other than a boolean is refused at construction', async () => {
  const unprepared = new Kysely<DB>({
    dialect: new ShardedDialect({ topology: f.topology, shardKeys: { events: 'user_id' }, keylessPolicy: { events: 'scatter' }, pool: { max: 1 }, prepareScatterStatements: false }),
  });
  try {
    for (let i = 0; i < 3; i++) expect(await ordered(unprepared, 11).execute()).toEqual(await ordered(single, 11).execute());
    const query = CompiledQuery.raw('select count(*)::int as n from pg_prepared_statements');
    for (const shard of f.shards) expect((await unprepared.executeQuery<{ n: number }>(onShard(query, shard.id))).rows).toEqual([{ n: 0 }]);
  } finally {
    await unprepared.destroy();
  }
  expect(() => new ShardedDialect({ topology: f.topology, prepareScatterStatements: 'yes' as unknown as boolean })).toThrow(
    expect.objectContaining({ code: ErrorCodes.INVALID_CONFIG, message: expect.stringMatching(/prepareScatterStatements/) }),
  );
});

test('shards that give a compared column two different types are refused, naming both', async () => {
  await onEveryShard(`create table drift (id int primary key, user_id int not null, v int not null)`);
  // One shard's column drifted to bigint: the merge would order two types by one order.
  const lastShard = f.shards[f.shards.length - 1]!;
  const pool = quietPool(lastShard.primaryUrl, 1);
  await pool.query('alter table drift alter column v type bigint');
  await pool.end();
  const drift = new Kysely<{ drift: { id: number; user_id: number; v: number } }>({
    dialect: new ShardedDialect({ topology: f.topology, shardKeys: { drift: 'user_id' }, keylessPolicy: { drift: 'scatter' } }),
  });
  try {
    await drift.insertInto('drift').values(Array.from({ length: 30 }, (_, i) => ({ id: i, user_id: i, v: i }))).execute();
    await expect(drift.selectFrom('drift').select(['id', 'v']).orderBy('v').execute()).rejects.toMatchObject({
      code: ErrorCodes.UNSUPPORTED_SCATTER,
      message: expect.stringMatching(/of type (integer|bigint) on shard "[^"]+" and (bigint|integer) on shard/),
    });
  } finally {
    await drift.destroy();
  }
});

test('a slot fence raised between executions of a prepared statement is seen by the next one; a statement without parameters is never prepared', async () => {
  // Row security does not apply to superusers: the app connects as an ordinary role.
  await onEveryShard(`create table fenced (id int primary key, user_id int not null, v int not null)`, false);
  for (const shard of f.shards) {
    const client = directClient({ connectionString: shard.primaryUrl });
    await client.connect();
    await installGuard(client, shard.id, [{ name: 'fenced', keyColumn: 'user_id' }], f.topology.slotCount);
    await client.query(`do $$ begin create role scatter_app login; exception when duplicate_object then null; end $$`);
    await client.query('grant all on fenced to scatter_app; grant usage on schema kysely_scale to scatter_app');
    await client.end();
  }
  const topology = createTopology({ shards: f.shards.map((s) => ({ id: s.id, primary: s.primaryUrl.replace(/\/\/[^@/]*@/, '//scatter_app@') })) });
  const app = new Kysely<{ fenced: { id: number; user_id: number; v: number } }>({
    dialect: new ShardedDialect({ topology, shardKeys: { fenced: 'user_id' }, keylessPolicy: { fenced: 'scatter' }, pool: { max: 1 } }),
  });
  const raise = (version: number) =>
    Promise.all(
      f.shards.map(async (shard) => {
        const pool = quietPool(shard.primaryUrl, 1);
        await pool.query(`update kysely_scale.shard_guard set required_version = ${version}`);
        await pool.end();
      }),
    );
  try {
    await app.insertInto('fenced').values(Array.from({ length: 30 }, (_, i) => ({ id: i, user_id: i, v: i }))).execute();
    const withParameter = () => app.selectFrom('fenced').select(['id', 'v']).where('v', '>=', 0).orderBy('v').limit(10);
    const withoutParameters = () => app.selectFrom('fenced').select(['id', 'v']).orderBy('v');
    // Past PostgreSQL's five custom plans, where a cached generic plan would be chosen.
    for (let i = 0; i < 8; i++) {
      expect(await withParameter().execute()).toHaveLength(10);
      expect(await withoutParameters().execute()).toHaveLength(30);
    }
    const prepared = CompiledQuery.raw('select statement from pg_prepared_statements');
    const statements = (await app.executeQuery<{ statement: string }>(onShard(prepared, f.shards[0]!.id))).rows.map((r) => r.statement);
    expect(statements.filter((s) => s.includes('"fenced"'))).toHaveLength(1);
    expect(statements.find((s) => s.includes('"fenced"'))).toMatch(/where "v" >= \$1/);
    await raise(topology.version + 5);
    for (const query of [withParameter, withoutParameters]) await expect(query().execute()).rejects.toMatchObject({ code: ErrorCodes.STALE_TOPOLOGY });
  } finally {
    await raise(0);
    await app.destroy();
  }
});

test('a column type change that changes a prepared statement\'s parameter types: the call runs again unnamed and succeeds', async () => {
  await onEveryShard(`create table typed (id int primary key, user_id int not null, status text not null)`);
  const typed = new Kysely<{ typed: { id: number; user_id: number; status: string } }>({
    dialect: new ShardedDialect({ topology: f.topology, shardKeys: { typed: 'user_id' }, keylessPolicy: { typed: 'scatter' }, pool: { max: 1 } }),
  });
  const reference = single as unknown as Kysely<{ typed: { id: number; user_id: number; status: string } }>;
  try {
    const rows = Array.from({ length: 20 }, (_, i) => ({ id: i, user_id: i, status: i % 2 === 0 ? 'paid' : 'new' }));
    await typed.insertInto('typed').values(rows).execute();
    await reference.insertInto('typed').values(rows).execute();
    const paid = (db: typeof typed) => db.selectFrom('typed').select(['id', 'status']).where('status', '=', 'paid').orderBy('id').limit(5);
    for (let i = 0; i < 3; i++) await paid(typed).execute();
    await onEveryShard(`create type typed_status as enum ('new', 'paid')`);
    await onEveryShard(`alter table typed alter column status type typed_status using status::typed_status`);
    for (let i = 0; i < 3; i++) expect(await paid(typed).execute()).toEqual(await paid(reference).execute());
  } finally {
    await typed.destroy();
  }
});

test('rows without their row description (a cursor class that drops pg-cursor\'s config) are refused with a coded error that says so', async () => {
  class TwoArgumentCursor extends Cursor {
    constructor(text: string, values?: unknown[]) {
      super(text, values);
    }
  }
  const db = new Kysely<DB>({ dialect: new ShardedDialect({ topology: f.topology, shardKeys: { events: 'user_id' }, keylessPolicy: { events: 'scatter' }, cursor: TwoArgumentCursor }) });
  try {
    const stream = async () => {
      for await (const _row of db.selectFrom('events').select(['id', 'at']).orderBy('at').stream(10)) void _row;
    };
    await expect(stream()).rejects.toMatchObject({ code: ErrorCodes.UNSUPPORTED_SCATTER, message: expect.stringMatching(/without their row description.*cursor class/) });
  } finally {
    await db.destroy();
  }
});

test('a connection that lost its prepared statements (DEALLOCATE ALL): the call succeeds, and the dialect stops preparing', async () => {
  const q = (db: Kysely<DB>) => db.selectFrom('events').select(['id', 'cents']).orderBy('cents', 'desc').orderBy('id').limit(8);
  for (let i = 0; i < 3; i++) await q(sharded).execute();
  expect((await preparedOnShards()).every((list) => list.some((s) => s.includes('order by "cents" desc')))).toBe(true);
  // What a pooler in transaction mode does to a client: its statements are not on the server connection it gets next.
  for (const shard of f.shards) await sharded.executeQuery(onShard(CompiledQuery.raw('deallocate all'), shard.id));
  expect(await q(sharded).execute()).toEqual(await q(single).execute());
  // No name handed out any more: new statements run unnamed.
  const fresh = (db: Kysely<DB>) => db.selectFrom('events').select(['id', 'label']).orderBy('label', 'desc').orderBy('id').limit(4);
  for (let i = 0; i < 3; i++) expect(await fresh(sharded).execute()).toEqual(await fresh(single).execute());
  expect((await preparedOnShards()).flat()).toEqual([]);
});
