/**
 * Kysely compatibility: ONE suite of query shapes runs against Kysely's own PostgresDialect and
 * against ShardedDialect with a one-shard topology, each on its own database of the same server,
 * with identical schema and data. The plain run records each result; the sharded run must return
 * the same (many cases also assert explicit values, so a wrong plain run fails too).
 *
 * The sharded variant uses the production shape of config (users by id, orders by user_id, orders
 * keyless → scatter, countries unsharded), so queries on sharded tables name their keys as a
 * sharded application's would. Raw SQL is never routed from its text: the sharded variant runs it
 * through `db.withPlugin(withShard('shard0'))`, as a sharded application must with several shards
 * (with one shard, raw SQL without a target runs too: checked below).
 */
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely';
import Cursor from 'pg-cursor';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { withShard } from '../../../src/sharding/routing/route-hint';
import { RoutingError } from '../../../src/sharding/sharding-errors';
import { quietPool } from './sharded-fixture';

interface DB {
  users: { id: number; name: string; email: string | null; country: string | null };
  orders: { id: number; user_id: number; amount: string; status: string | null };
  countries: { code: string; name: string };
  scratch: { id: Generated<number>; note: string };
  session_notes: { note: string };
}

type Variant = 'plain' | 'sharded';

let cluster: TestCluster;
const urls = new Map<Variant, string>();
beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1 });
  const [plain] = await cluster.createDatabase('compat_plain');
  const [sharded] = await cluster.createDatabase('compat_sharded');
  urls.set('plain', plain!.primaryUrl);
  urls.set('sharded', sharded!.primaryUrl);
}, 60_000);
afterAll(() => cluster?.stop());

function open(variant: Variant): Kysely<DB> {
  const url = urls.get(variant)!;
  if (variant === 'plain') return new Kysely<DB>({ dialect: new PostgresDialect({ pool: quietPool(url, 5), cursor: Cursor }) });
  const topology = createTopology({ shards: [{ id: 'shard0', primary: url }] });
  return new Kysely<DB>({
    dialect: new ShardedDialect({ topology, shardKeys: { users: 'id', orders: 'user_id' }, keylessPolicy: { orders: 'scatter' }, cursor: Cursor }),
  });
}

const USERS = Array.from({ length: 40 }, (_, i) => ({
  id: i + 1,
  name: `${['ann', 'bob', 'cy', 'dee'][i % 4]}-${i + 1}`,
  email: i % 5 === 0 ? null : `u${i + 1}@example.com`,
  country: ['fr', 'de', 'jp', null][i % 4] ?? null,
}));
const ORDERS = Array.from({ length: 200 }, (_, i) => ({
  id: i + 1,
  user_id: 1 + ((i * 7) % 40),
  amount: ((i % 13) * 3.75 - 10).toFixed(2),
  status: ['new', 'paid', 'shipped', null][i % 4] ?? null,
}));
const SOME = [1, 2, 3, 5, 8, 13, 21, 34];

/** Results of the plain run, by test name, for the sharded run to compare with. */
const expected = new Map<string, unknown>();

describe.each<[Variant]>([['plain'], ['sharded']])('Kysely query shapes through %s', (variant) => {
  let db: Kysely<DB>;
  /** Where raw SQL goes: the sharded variant needs an explicit target. */
  let raw: Kysely<DB>;

  /** Records (plain) or compares with the record (sharded). */
  function same<T>(name: string, value: T): T {
    if (variant === 'plain') expected.set(name, value);
    else {
      expect(expected.has(name)).toBe(true); // the plain variant ran this case first
      expect(value).toEqual(expected.get(name));
    }
    return value;
  }

  beforeAll(async () => {
    db = open(variant);
    raw = variant === 'plain' ? db : db.withPlugin(withShard('shard0'));
    await db.schema.createTable('users').addColumn('id', 'bigint', (c) => c.primaryKey()).addColumn('name', 'text', (c) => c.notNull()).addColumn('email', 'text', (c) => c.unique()).addColumn('country', 'text').execute();
    await db.schema.createTable('orders').addColumn('id', 'integer').addColumn('user_id', 'bigint', (c) => c.notNull()).addColumn('amount', 'numeric(10, 2)', (c) => c.notNull()).addColumn('status', 'text').addPrimaryKeyConstraint('orders_pk', ['user_id', 'id']).execute();
    await db.schema.createTable('countries').addColumn('code', 'text', (c) => c.primaryKey()).addColumn('name', 'text', (c) => c.notNull()).execute();
    await db.insertInto('countries').values([{ code: 'fr', name: 'France' }, { code: 'de', name: 'Germany' }, { code: 'jp', name: 'Japan' }, { code: 'it', name: 'Italy' }]).execute();
    await db.insertInto('users').values(USERS).execute();
    await db.insertInto('orders').values(ORDERS).execute();
  });
  afterAll(() => db?.destroy());

  describe('select', () => {
    test('where with and/or/in/like', async () => {
      const rows = await db
        .selectFrom('users')
        .select(['id', 'name', 'email'])
        .where('id', 'in', SOME)
        .where((eb) => eb.or([eb('name', 'like', 'a%'), eb.and([eb('email', 'is not', null), eb('name', 'ilike', '%B-%')])]))
        .orderBy('id')
        .execute();
      expect(rows.map((r) => Number(r.id))).toEqual([1, 2, 5, 13, 21, 34]);
      same('where', rows);
    });

    test('one key, executeTakeFirst and executeTakeFirstOrThrow', async () => {
      const one = await db.selectFrom('users').selectAll().where('id', '=', 7).executeTakeFirstOrThrow();
      const none = await db.selectFrom('users').selectAll().where('id', '=', 999).executeTakeFirst();
      expect(none).toBeUndefined();
      expect(one.name).toBe('cy-7');
      same('one', one);
    });

    test('order by, limit and offset (keyless scatter table)', async () => {
      const rows = await db.selectFrom('orders').select(['id', 'user_id', 'amount', 'status']).orderBy('amount', 'desc').orderBy('status', (o) => o.asc().nullsFirst()).orderBy('id').limit(10).offset(5).execute();
      expect(rows).toHaveLength(10);
      same('order-limit', rows);
    });

    test('aggregates, group by, and having', async () => {
      const totals = await db.selectFrom('orders').select((eb) => [eb.fn.countAll().as('n'), eb.fn.sum('amount').as('total'), eb.fn.avg('amount').as('mean'), eb.fn.min('amount').as('lo'), eb.fn.max('amount').as('hi')]).execute();
      expect(totals[0]!.n).toBe('200');
      const grouped = await db
        .selectFrom('orders')
        .select((eb) => ['user_id', eb.fn.countAll().as('n'), eb.fn.sum('amount').as('total')])
        .where('user_id', 'in', SOME)
        .groupBy('user_id')
        .having((eb) => eb.fn.countAll(), '>=', 5)
        .orderBy('user_id')
        .execute();
      expect(grouped.length).toBeGreaterThan(0);
      same('aggregates', { totals, grouped });
    });

    test('joins on the shard key, and with an unsharded table', async () => {
      const joined = await db
        .selectFrom('users as u')
        .innerJoin('orders as o', 'o.user_id', 'u.id')
        .select(['u.id', 'u.name', 'o.id as order_id', 'o.amount'])
        .where('u.id', 'in', [3, 4])
        .orderBy('o.id')
        .execute();
      expect(joined.length).toBeGreaterThan(0);
      const left = await db.selectFrom('users').leftJoin('orders', (j) => j.onRef('orders.user_id', '=', 'users.id').on('orders.status', '=', 'paid')).select(['users.id', 'orders.id as oid']).where('users.id', '=', 3).orderBy('orders.id').execute();
      const countries = await db.selectFrom('countries as c').leftJoin('countries as d', 'd.code', 'c.code').select(['c.code', 'd.name']).orderBy('c.code').execute();
      same('joins', { joined, left, countries });
    });

    test('subqueries in where, select and from', async () => {
      const inSub = await db.selectFrom('users').select(['id', 'name']).where('id', '=', 9).where('id', 'in', (qb) => qb.selectFrom('orders').select('user_id').where('user_id', '=', 9)).execute();
      expect(inSub).toHaveLength(1);
      const scalar = await db
        .selectFrom('users')
        .select((eb) => ['id', eb.selectFrom('orders').select((e) => e.fn.countAll().as('n')).whereRef('orders.user_id', '=', 'users.id').where('orders.user_id', '=', 9).as('order_count')])
        .where('id', '=', 9)
        .execute();
      const exists = await db.selectFrom('countries').select('code').where((eb) => eb.exists(eb.selectFrom('countries as c2').select('c2.code').whereRef('c2.code', '=', 'countries.code').where('c2.name', 'like', '%an%'))).orderBy('code').execute();
      const derived = await db.selectFrom((eb) => eb.selectFrom('countries').select(['code', 'name']).where('code', '<>', 'it').as('d')).select(['d.code']).orderBy('d.code', 'desc').execute();
      expect(derived.map((r) => r.code)).toEqual(['jp', 'fr', 'de']);
      same('subqueries', { inSub, scalar, exists, derived });
    });

    test('common table expressions', async () => {
      const rows = await db
        .with('mine', (qb) => qb.selectFrom('orders').select(['id', 'amount']).where('user_id', '=', 12))
        .selectFrom('mine')
        .select((eb) => [eb.fn.countAll().as('n'), eb.fn.sum('amount').as('total')])
        .execute();
      const named = await db.with('c', (qb) => qb.selectFrom('countries').select(['code', 'name'])).selectFrom('c').selectAll().where('c.code', 'in', ['fr', 'it']).orderBy('code').execute();
      expect(named.map((r) => r.code)).toEqual(['fr', 'it']);
      same('cte', { rows, named });
    });

    test('distinct and union on an unsharded table', async () => {
      const distinct = await db.selectFrom('users').select('country').distinct().where('id', 'in', SOME).orderBy('country').execute();
      const union = await db.selectFrom('countries').select('code').where('code', '=', 'fr').union(db.selectFrom('countries').select('code').where('code', '=', 'jp')).orderBy('code').execute();
      expect(union).toEqual([{ code: 'fr' }, { code: 'jp' }]);
      same('distinct-union', { distinct, union });
    });
  });

  describe('insert, update, delete', () => {
    test('single and multi-row insert, returning, affected counts', async () => {
      const single = await db.insertInto('users').values({ id: 100, name: 'new-100', email: 'n100@example.com', country: 'it' }).executeTakeFirst();
      expect(single.numInsertedOrUpdatedRows).toBe(1n);
      const multi = await db.insertInto('users').values([{ id: 101, name: 'new-101', email: null, country: null }, { id: 102, name: 'new-102', email: 'n102@example.com', country: 'fr' }]).returning(['id', 'name']).execute();
      expect(multi.map((r) => Number(r.id))).toEqual([101, 102]);
      const countryInsert = await db.insertInto('countries').values({ code: 'es', name: 'Spain' }).returningAll().executeTakeFirstOrThrow();
      same('insert', { single, multi, countryInsert });
    });

    test('insert … on conflict do update / do nothing', async () => {
      const upsert = await db
        .insertInto('users')
        .values({ id: 100, name: 'renamed-100', email: 'n100@example.com', country: 'it' })
        .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ name: eb.ref('excluded.name') })))
        .returning(['id', 'name'])
        .execute();
      expect(upsert).toEqual([{ id: '100', name: 'renamed-100' }]);
      const nothing = await db.insertInto('users').values({ id: 101, name: 'ignored', email: null, country: null }).onConflict((oc) => oc.doNothing()).executeTakeFirst();
      same('upsert', { upsert, nothing });
    });

    test('update and delete with returning and affected counts', async () => {
      const updated = await db.updateTable('orders').set({ status: 'archived' }).where('user_id', 'in', [1, 2]).where('status', 'is', null).executeTakeFirst();
      const updatedRows = await db.updateTable('users').set((eb) => ({ name: eb.fn('upper', ['name']) })).where('id', 'in', [101, 102]).returning(['id', 'name']).execute();
      expect(updatedRows.map((r) => r.name).sort()).toEqual(['NEW-101', 'NEW-102']);
      const deleted = await db.deleteFrom('users').where('id', '=', 102).returningAll().execute();
      const deletedCount = await db.deleteFrom('users').where('id', 'in', [100, 101, 999]).executeTakeFirst();
      expect(deletedCount.numDeletedRows).toBe(2n);
      same('update-delete', { updated, updatedRows: [...updatedRows].sort((a, b) => Number(a.id) - Number(b.id)), deleted, deletedCount });
    });

    test('keyless update/delete of a scatter table', async () => {
      const updated = await db.updateTable('orders').set({ status: 'big' }).where('amount', '>', '30').executeTakeFirst();
      expect(updated.numUpdatedRows).toBeGreaterThan(0n);
      const deleted = await db.deleteFrom('orders').where('status', '=', 'archived').executeTakeFirst();
      same('keyless-writes', { updated, deleted });
    });
  });

  describe('transactions', () => {
    test('commit', async () => {
      const result = await db.transaction().execute(async (trx) => {
        await trx.insertInto('users').values({ id: 200, name: 'trx-200', email: null, country: null }).execute();
        await trx.updateTable('users').set({ country: 'jp' }).where('id', '=', 200).execute();
        return trx.selectFrom('users').select(['id', 'country']).where('id', '=', 200).executeTakeFirstOrThrow();
      });
      expect(result).toEqual({ id: '200', country: 'jp' });
      expect(await db.selectFrom('users').select('name').where('id', '=', 200).executeTakeFirst()).toEqual({ name: 'trx-200' });
      same('commit', result);
    });

    test('rollback when the callback throws', async () => {
      const error = await db
        .transaction()
        .execute(async (trx) => {
          await trx.insertInto('users').values({ id: 201, name: 'gone', email: null, country: null }).execute();
          throw new Error('boom');
        })
        .catch((e: Error) => e.message);
      expect(error).toBe('boom');
      expect(await db.selectFrom('users').select('id').where('id', '=', 201).execute()).toEqual([]);
    });

    test('rollback of a failed statement keeps PostgreSQL’s error', async () => {
      const error = await db
        .transaction()
        .execute(async (trx) => {
          await trx.insertInto('users').values({ id: 202, name: 'x', email: 'dup@example.com', country: null }).execute();
          await trx.insertInto('users').values({ id: 203, name: 'y', email: 'dup@example.com', country: null }).execute();
        })
        .catch((e: { code?: string; constraint?: string }) => ({ code: e.code, constraint: e.constraint }));
      expect(error).toEqual({ code: '23505', constraint: 'users_email_key' });
      expect(await db.selectFrom('users').select('id').where('id', 'in', [202, 203]).execute()).toEqual([]);
    });

    test('isolation level, access mode and raw SQL in a bound transaction', async () => {
      const settings = await db
        .transaction()
        .setIsolationLevel('repeatable read')
        .execute(async (trx) => {
          await trx.selectFrom('users').select('id').where('id', '=', 1).execute(); // binds the sharded transaction
          // Raw SQL in a transaction bound to a shard needs no hint.
          return (await sql<{ level: string; ro: string }>`select current_setting('transaction_isolation') as level, current_setting('transaction_read_only') as ro`.execute(trx)).rows;
        });
      expect(settings).toEqual([{ level: 'repeatable read', ro: 'off' }]);
      const readOnly = await db
        .transaction()
        .setAccessMode('read only')
        .execute(async (trx) => {
          await trx.selectFrom('users').select('id').where('id', '=', 1).execute();
          return trx.insertInto('users').values({ id: 204, name: 'ro', email: null, country: null }).execute().catch((e: { code?: string }) => e.code);
        })
        .catch((e: { code?: string }) => `outer ${e.code}`);
      // PostgreSQL refuses the write (read_only_sql_transaction); COMMIT of the aborted transaction rolls back.
      expect(readOnly).toBe('25006');
      expect(await db.selectFrom('users').select('id').where('id', '=', 204).execute()).toEqual([]);
      same('isolation', { settings, readOnly });
    });

    test('savepoints: rollback to, release, then commit', async () => {
      const trx = await db.startTransaction().execute();
      await trx.insertInto('users').values({ id: 210, name: 'kept', email: null, country: null }).execute();
      const sp1 = await trx.savepoint('sp1').execute();
      await sp1.insertInto('users').values({ id: 211, name: 'undone', email: null, country: null }).execute();
      const back = await sp1.rollbackToSavepoint('sp1').execute();
      const sp2 = await back.savepoint('sp2').execute();
      await sp2.insertInto('users').values({ id: 212, name: 'released', email: null, country: null }).execute();
      const released = await sp2.releaseSavepoint('sp2').execute();
      await released.commit().execute();
      const rows = await db.selectFrom('users').select(['id', 'name']).where('id', 'in', [210, 211, 212]).orderBy('id').execute();
      expect(rows).toEqual([{ id: '210', name: 'kept' }, { id: '212', name: 'released' }]);
      same('savepoints', rows);
    });

    test('a controlled transaction rolled back leaves nothing', async () => {
      const trx = await db.startTransaction().execute();
      await trx.insertInto('users').values({ id: 220, name: 'rolled', email: null, country: null }).execute();
      await trx.rollback().execute();
      expect(await db.selectFrom('users').select('id').where('id', '=', 220).execute()).toEqual([]);
    });
  });

  describe('connections, raw SQL, streams, schema', () => {
    test('db.connection() keeps session state across statements', async () => {
      const seen = await db.connection().execute(async (conn) => {
        await conn.schema.createTable('session_notes').temporary().addColumn('note', 'text').execute();
        await conn.insertInto('session_notes').values([{ note: 'a' }, { note: 'b' }]).execute();
        const notes = await conn.selectFrom('session_notes').select('note').orderBy('note').execute();
        const rawConn = variant === 'plain' ? conn : conn.withPlugin(withShard('shard0'));
        await sql`select set_config('app.tag', 'compat', false)`.execute(rawConn);
        const tag = (await sql<{ tag: string }>`select current_setting('app.tag') as tag`.execute(rawConn)).rows;
        return { notes, tag };
      });
      expect(seen).toEqual({ notes: [{ note: 'a' }, { note: 'b' }], tag: [{ tag: 'compat' }] });
      same('connection', seen);
    });

    test('raw SQL through the sql tag', async () => {
      const rows = (await sql<{ n: string; s: string }>`select count(*) as n, sum(amount) as s from orders where user_id = ${5}`.execute(raw)).rows;
      const ref = (await sql<{ name: string }>`select ${sql.ref('name')} from ${sql.table('users')} where id = ${sql.lit(4)}`.execute(raw)).rows;
      expect(ref).toEqual([{ name: 'dee-4' }]);
      const write = await sql`update countries set name = name where code in ('fr', 'de')`.execute(raw);
      expect(write.numAffectedRows).toBe(2n);
      same('raw', { rows, ref, write: write.numAffectedRows });
    });

    test('raw SQL without a target', async () => {
      const outcome = await sql`select 1 as one`.execute(db).then(
        (r) => r.rows,
        (e: RoutingError) => e.code,
      );
      // With one shard every statement runs there (a drop-in); with several, raw SQL needs a target (see one-shard-drop-in).
      expect(outcome).toEqual([{ one: 1 }]);
      same('raw-untargeted', outcome);
    });

    test('stream()', async () => {
      const streamed: unknown[] = [];
      for await (const row of db.selectFrom('orders').select(['id', 'amount']).where('user_id', 'in', SOME).orderBy('id').stream(3)) streamed.push(row);
      const scattered: unknown[] = [];
      for await (const row of db.selectFrom('orders').select(['id', 'status']).orderBy('status', (o) => o.desc().nullsFirst()).orderBy('id').limit(17).stream(4)) scattered.push(row);
      expect(scattered).toHaveLength(17);
      expect(streamed).toEqual(await db.selectFrom('orders').select(['id', 'amount']).where('user_id', 'in', SOME).orderBy('id').execute());
      same('stream', { streamed, scattered });
    });

    test('schema builder: create, use, alter and drop a table', async () => {
      await db.schema.createTable('scratch').ifNotExists().addColumn('id', 'serial', (c) => c.primaryKey()).addColumn('note', 'text', (c) => c.notNull()).execute();
      await db.schema.alterTable('scratch').addColumn('extra', 'integer').execute();
      await db.schema.createIndex('scratch_note_idx').on('scratch').column('note').execute();
      const inserted = await db.insertInto('scratch').values([{ note: 'x' }, { note: 'y' }]).returning(['id', 'note']).execute();
      expect(inserted).toEqual([{ id: 1, note: 'x' }, { id: 2, note: 'y' }]);
      const tables = await db.introspection.getTables();
      const scratch = tables.find((t) => t.name === 'scratch');
      expect(scratch?.columns.map((c) => c.name)).toEqual(['id', 'note', 'extra']);
      await db.schema.dropTable('scratch').execute();
      // The test cluster may add tables of its own (replica_identity) to every database.
      const left = (await db.introspection.getTables()).map((t) => t.name).filter((name) => name !== 'replica_identity').sort();
      expect(left).toEqual(['countries', 'orders', 'users']);
      same('schema', { inserted, left });
    });

    test('final state of every table', async () => {
      const users = await db.selectFrom('users').selectAll().where('id', 'in', [...USERS.map((u) => u.id), 200, 210, 212]).orderBy('id').execute();
      const orders = await db.selectFrom('orders').selectAll().orderBy('id').execute();
      const countries = await db.selectFrom('countries').selectAll().orderBy('code').execute();
      same('final', { users, orders, countries });
    });
  });
});
