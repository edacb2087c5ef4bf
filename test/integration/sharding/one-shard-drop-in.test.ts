/**
 * One shard is a drop-in for PostgresDialect: with a one-shard topology every statement Kysely can
 * send runs on that shard unchanged, whatever tables are declared (raw `sql`, `sql.raw`, MERGE,
 * `db.executeQuery(compiled)`, introspection, Kysely's Migrator, streams, controlled transactions),
 * and transaction control reaches Kysely's `log` callback as it does with PostgresDialect. With
 * several shards, `onShard(compiled, id)` targets a CompiledQuery (plugins never run on one).
 */
import { CompiledQuery, Kysely, Migrator, PostgresDialect, sql, type LogEvent, type Migration } from 'kysely';
import { jsonArrayFrom, jsonObjectFrom } from 'kysely/helpers/postgres';
import Cursor from 'pg-cursor';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import type { ShardedDialectConfig } from '../../../src/sharding/dialect/sharded-dialect-config';
import { onShard, onShardKey } from '../../../src/sharding/routing/route-hint';
import { quietPool } from './sharded-fixture';

interface DB {
  items: { id: number; owner: number; label: string };
  stock: { id: number; qty: number };
}

let cluster: TestCluster;
const urls: string[] = [];
beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2 });
  const plain = await cluster.createDatabase('dropin_plain');
  const one = await cluster.createDatabase('dropin_one');
  const two = await cluster.createDatabase('dropin_two');
  urls.push(plain[0]!.primaryUrl, one[0]!.primaryUrl, two[0]!.primaryUrl, two[1]!.primaryUrl);
}, 60_000);
afterAll(() => cluster?.stop());

function plainDb(log?: (event: LogEvent) => void): Kysely<DB> {
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool: quietPool(urls[0]!, 4), cursor: Cursor }), ...(log ? { log } : {}) });
}

function oneShardDb(config: Partial<ShardedDialectConfig> = {}, log?: (event: LogEvent) => void): Kysely<DB> {
  const topology = createTopology({ shards: [{ id: 'only', primary: urls[1]! }] });
  return new Kysely<DB>({ dialect: new ShardedDialect({ topology, cursor: Cursor, ...config }), ...(log ? { log } : {}) });
}

const MIGRATIONS: Record<string, Migration> = {
  '001_items': {
    up: async (db) => {
      await db.schema.createTable('items').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('owner', 'integer', (c) => c.notNull()).addColumn('label', 'text', (c) => c.notNull().unique()).execute();
    },
    down: async (db) => db.schema.dropTable('items').execute(),
  },
  '002_stock': {
    up: async (db) => {
      await db.schema.createTable('stock').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('qty', 'integer', (c) => c.notNull()).execute();
      await sql`insert into stock values (1, 10), (2, 20)`.execute(db);
    },
    down: async (db) => db.schema.dropTable('stock').execute(),
  },
};

/** Everything the suite does, run the same way on both dialects; returns what it saw. */
async function scenario(db: Kysely<DB>): Promise<Record<string, unknown>> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
  const migrated = await migrator.migrateToLatest();
  const seen: Record<string, unknown> = {
    migrated: { error: migrated.error, results: migrated.results },
    applied: (await migrator.getMigrations()).map((m) => [m.name, m.executedAt !== undefined]),
  };
  await db.insertInto('items').values([{ id: 1, owner: 7, label: 'a' }, { id: 2, owner: 8, label: 'b' }, { id: 3, owner: 7, label: 'c' }]).execute();
  seen.raw = (await sql<{ n: string }>`select count(*) as n from items where owner = ${7}`.execute(db)).rows;
  seen.rawText = (await sql.raw<{ label: string }>('select label from items order by id desc limit 1').execute(db)).rows;
  seen.compiled = (await db.executeQuery(db.selectFrom('items').select('label').where('owner', '=', 8).compile())).rows;
  seen.compiledRaw = (await db.executeQuery(CompiledQuery.raw('select 40 + 2 as answer'))).rows;
  seen.merge = (
    await db
      .mergeInto('stock as s')
      .using('items as i', 'i.id', 's.id')
      .whenMatched()
      .thenUpdateSet((eb) => ({ qty: eb('s.qty', '+', 1) }))
      .whenNotMatched()
      .thenInsertValues((eb) => ({ id: eb.ref('i.id'), qty: 0 }))
      .executeTakeFirst()
  ).numChangedRows;
  seen.stock = await db.selectFrom('stock').selectAll().orderBy('id').execute();
  seen.json = await db
    .selectFrom('stock as s')
    .select((eb) => [
      's.id',
      jsonArrayFrom(eb.selectFrom('items as i').select(['i.id', 'i.label']).whereRef('i.id', '=', 's.id').orderBy('i.id')).as('items'),
      jsonObjectFrom(eb.selectFrom('items as i').select('i.owner').whereRef('i.id', '=', 's.id')).as('owner'),
      sql<string>`jsonb_build_object('qty', s.qty) ->> 'qty'`.as('qty_text'),
    ])
    .orderBy('s.id')
    .execute();
  seen.joinCteUnion = {
    join: await db.selectFrom('items as i').innerJoin('stock as s', 's.id', 'i.id').select(['i.label', 's.qty']).orderBy('i.label').execute(),
    cte: await db.with('mine', (qb) => qb.selectFrom('items').select(['id', 'owner']).where('owner', '=', 7)).selectFrom('mine').select((eb) => eb.fn.count('id').as('n')).execute(),
    union: await db.selectFrom('items').select('id').where('owner', '=', 7).union(db.selectFrom('stock').select('id')).orderBy('id').execute(),
    updated: await db.updateTable('stock').set((eb) => ({ qty: eb('qty', '*', 2) })).where('id', '>', 1).returningAll().execute(),
    deleted: await db.deleteFrom('stock').where('id', '=', 3).returning(['id', 'qty']).execute(),
  };
  seen.sqlError = await sql`select 1 / 0`.execute(db).then(
    () => 'no error',
    (e: Record<string, unknown>) => ({ code: e.code, message: e.message, severity: e.severity, routine: e.routine }),
  );
  seen.tables = (await db.introspection.getTables()).map((t) => [t.name, t.columns.map((c) => `${c.name}:${c.dataType}`)]).sort();
  seen.schemas = (await db.introspection.getSchemas()).map((s) => s.name).filter((n) => n === 'public');
  const streamed: unknown[] = [];
  for await (const row of db.selectFrom('items').select(['id', 'label']).orderBy('id').stream(2)) streamed.push(row);
  seen.streamed = streamed;
  const trx = await db.startTransaction().setIsolationLevel('repeatable read').execute();
  await trx.updateTable('items').set({ label: 'a2' }).where('id', '=', 1).execute();
  const sp = await trx.savepoint('sp 1').execute();
  await sp.deleteFrom('items').execute();
  const back = await sp.rollbackToSavepoint('sp 1').execute();
  await back.releaseSavepoint('sp 1').execute();
  seen.inTransaction = (await sql<{ level: string }>`select current_setting('transaction_isolation') as level`.execute(back)).rows;
  await back.commit().execute();
  seen.afterCommit = await db.selectFrom('items').select(['id', 'label']).orderBy('id').execute();
  seen.error = await db
    .insertInto('items')
    .values({ id: 9, owner: 1, label: 'a2' })
    .execute()
    .then(
      () => 'no error',
      (e: Record<string, unknown>) => ({ name: e.constructor.name, code: e.code, detail: e.detail, constraint: e.constraint, table: e.table, message: e.message }),
    );
  const down = await migrator.migrateDown();
  seen.down = { error: down.error, results: down.results };
  return seen;
}

test('a one-shard ShardedDialect without shardKeys runs every statement the suite sends as PostgresDialect does, with the same log', async () => {
  const logs = { plain: [] as string[], sharded: [] as string[] };
  // Parameters as logged, the Migrator's timestamps masked (they differ between the two runs).
  const parameters = (values: readonly unknown[]) => JSON.stringify(values, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).replace(/"\d{4}-\d\d-\d\dT[\d:.]+Z"/g, '"<time>"');
  const logTo = (list: string[]) => (e: LogEvent) => list.push(`${e.level} ${e.query.sql} ${parameters(e.query.parameters)}`);
  const plain = plainDb(logTo(logs.plain));
  const sharded = oneShardDb({}, logTo(logs.sharded));
  try {
    const expected = await scenario(plain);
    expect(expected.error).toMatchObject({ code: '23505', constraint: 'items_label_key' });
    expect(expected.sqlError).toMatchObject({ code: '22012' });
    expect(expected.migrated).toMatchObject({ error: undefined, results: [{ status: 'Success' }, { status: 'Success' }] });
    expect(await scenario(sharded)).toEqual(expected);
  } finally {
    await plain.destroy();
    await sharded.destroy();
  }
  // Every statement and its parameters, transaction control and the Migrator's lock included, logged alike.
  expect(logs.plain.some((l) => l.includes('pg_advisory_lock('))).toBe(true);
  expect(logs.plain.filter((l) => l.startsWith('error'))).toHaveLength(2);
  expect(logs.sharded).toEqual(logs.plain);
});

test('whatever tables are declared: keyless queries, raw SQL and MERGE on declared sharded tables run on the one shard', async () => {
  const db = oneShardDb({ shardKeys: { items: 'owner', stock: 'id' } });
  try {
    await db.schema.dropTable('items').ifExists().execute();
    await db.schema.createTable('items').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('owner', 'integer').addColumn('label', 'text').execute();
    await db.insertInto('items').values([{ id: 1, owner: 1, label: 'x' }, { id: 2, owner: 2, label: 'y' }]).execute();
    expect(await db.selectFrom('items').select('id').orderBy('id').execute()).toEqual([{ id: 1 }, { id: 2 }]); // keyless, default policy 'error'
    expect((await db.updateTable('items').set({ label: 'z' }).executeTakeFirst()).numUpdatedRows).toBe(2n); // keyless write
    expect((await sql<{ n: number }>`select count(*)::int as n from items`.execute(db)).rows).toEqual([{ n: 2 }]);
    expect((await db.selectFrom('items').select('id').where('owner', '=', null as unknown as number).execute())).toEqual([]);
  } finally {
    await db.schema.dropTable('items').ifExists().execute();
    await db.destroy();
  }
});

test('BEGIN with its isolation level, COMMIT, ROLLBACK and savepoints reach Kysely’s log as with PostgresDialect', async () => {
  const run = async (db: Kysely<DB>): Promise<void> => {
    await db.schema.createTable('stock').ifNotExists().addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('qty', 'integer').execute();
    await db.transaction().setIsolationLevel('serializable').setAccessMode('read write').execute(async (trx) => {
      await trx.insertInto('stock').values({ id: 100, qty: 1 }).execute();
    });
    await db.transaction().execute(async (trx) => {
      await trx.selectFrom('stock').select('id').where('id', '=', 100).execute();
    });
    await db.transaction().execute(async () => {
      throw new Error('rolled back');
    }).catch(() => undefined);
    const trx = await db.startTransaction().execute();
    const sp = await trx.savepoint('a"b').execute();
    await sp.updateTable('stock').set({ qty: 2 }).where('id', '=', 100).execute();
    await (await sp.rollbackToSavepoint('a"b').execute()).releaseSavepoint('a"b').execute();
    await trx.rollback().execute();
    await db.deleteFrom('stock').where('id', '=', 100).execute();
  };
  const logged = (events: LogEvent[]): string[] => events.map((e) => `${e.level} ${e.query.sql}`);
  const plainEvents: LogEvent[] = [];
  const shardedEvents: LogEvent[] = [];
  const plain = plainDb((e) => plainEvents.push(e));
  const sharded = oneShardDb({}, (e) => shardedEvents.push(e));
  try {
    await run(plain);
    await run(sharded);
  } finally {
    await plain.destroy();
    await sharded.destroy();
  }
  expect(logged(plainEvents)).toContain('query start transaction isolation level serializable read write');
  expect(logged(plainEvents)).toContain('query savepoint "a""b"');
  expect(logged(shardedEvents)).toEqual(logged(plainEvents));
});

describe('several shards: compiled queries and raw SQL target a shard with onShard / onShardKey', () => {
  let db: Kysely<DB>;
  let dialect: ShardedDialect;
  beforeAll(async () => {
    const topology = createTopology({ shards: [{ id: 's0', primary: urls[2]! }, { id: 's1', primary: urls[3]! }] });
    dialect = new ShardedDialect({ topology, shardKeys: { items: 'owner' } });
    db = new Kysely<DB>({ dialect });
    await db.schema.createTable('items').addColumn('id', 'integer').addColumn('owner', 'integer').addColumn('label', 'text').execute();
  });
  afterAll(() => db?.destroy());

  test('a CompiledQuery runs on the shard it names, raw or built, in and out of transactions', async () => {
    const where = (await db.executeQuery(onShard(sql<{ db: string; port: string }>`select current_database() as db, current_setting('port') as port`.compile(db), 's1'))).rows[0];
    const direct = quietPool(urls[3]!, 1);
    const expected = (await direct.query(`select current_database() as db, current_setting('port') as port`)).rows[0];
    await direct.end();
    expect(where).toEqual(expected);
    // The refusal's advice names what works for a CompiledQuery (plugins never see one).
    await expect(db.executeQuery(sql`select 1`.compile(db))).rejects.toMatchObject({ code: 'E_NO_SHARD_KEY', message: expect.stringContaining('db.executeQuery(onShardKey(compiled, key)) or onShard(compiled, id)') });
    const key = 12345;
    await db.executeQuery(onShardKey(db.insertInto('items').values({ id: 1, owner: key, label: 'k' }).compile(), key));
    const shard = dialect.topology.shardForKey(key).id;
    const other = shard === 's0' ? 's1' : 's0';
    expect((await db.executeQuery(onShard(sql<{ n: number }>`select count(*)::int as n from items`.compile(db), shard))).rows).toEqual([{ n: 1 }]);
    expect((await db.executeQuery(onShard(sql<{ n: number }>`select count(*)::int as n from items`.compile(db), other))).rows).toEqual([{ n: 0 }]);
    const inTrx = await db.transaction().execute((trx) => trx.executeQuery(onShard(CompiledQuery.raw('select 7 as seven'), other)));
    expect(inTrx.rows).toEqual([{ seven: 7 }]);
    await expect(db.executeQuery(onShard(CompiledQuery.raw('select 1'), 'nope'))).rejects.toMatchObject({ code: 'E_UNKNOWN_SHARD' });
  });

  test('savepoint names that need quoting work before the transaction is bound: releasing one removes it, PostgreSQL refuses a rollback to it (3B001)', async () => {
    const trx = await db.startTransaction().execute();
    const sp = await trx.savepoint('a"b').execute();
    const released = await sp.releaseSavepoint('a"b').execute();
    await released.insertInto('items').values({ id: 2, owner: 1, label: 'sp' }).execute(); // binds the transaction: BEGIN is sent now
    await expect(released.rollbackToSavepoint('a"b' as never).execute()).rejects.toMatchObject({ code: '3B001' });
    await released.rollback().execute();
    // Before binding: rollback to a quoted savepoint undoes only what came after it.
    const trx2 = await db.startTransaction().execute();
    const sp2 = await trx2.savepoint('x"y').execute();
    const back = await sp2.rollbackToSavepoint('x"y').execute();
    await back.insertInto('items').values({ id: 3, owner: 1, label: 'kept' }).execute();
    await back.commit().execute();
    expect(await db.selectFrom('items').select('label').where('owner', '=', 1).execute()).toEqual([{ label: 'kept' }]);
  });
});
