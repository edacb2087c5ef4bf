/**
 * The query analysis reads, from the operation-node tree alone, the tables of every scope, the
 * shard keys each scope is pinned to, the rows of an insert, new key values and nested writes.
 */
import { sql, type RootOperationNode } from 'kysely';
import { analyzeQuery, type QueryAnalysis, type ShardKeyLookup } from '../../../src/sharding/routing/query-analysis';
import { offlineKysely } from '../../support/offline-kysely';

const db = offlineKysely();
const keyColumns: Record<string, string> = { orders: 'user_id', users: 'id', items: 'user_id' };
const lookup: ShardKeyLookup = {
  shardKeyOf: (table, schema) => {
    const column = schema === undefined ? keyColumns[table] : undefined;
    return column === undefined ? undefined : { table, column, canonical: (value) => value };
  },
};
const analyze = (q: { toOperationNode(): unknown }): QueryAnalysis => analyzeQuery(q.toOperationNode() as RootOperationNode, lookup);

describe('query analysis', () => {
  it('reads the key a WHERE pins through =, in, and, or and parentheses', () => {
    expect(analyze(db.selectFrom('orders').selectAll().where('user_id', '=', 7)).scopes).toEqual([
      { shardedTables: ['orders'], unshardedTables: [], keys: [7], unlinkedTables: [] },
    ]);
    const list = analyze(db.selectFrom('orders').selectAll().where('user_id', 'in', [1, 2, 3])).scopes[0]!;
    expect(list.keys).toEqual([1, 2, 3]);
    expect(list.keyList?.kind).toBe('PrimitiveValueListNode');
    const narrowest = analyze(db.selectFrom('orders').selectAll().where((eb) => eb.and([eb('user_id', 'in', [1, 2]), eb.parens('user_id', '=', 3)])));
    expect(narrowest.scopes[0]!.keys).toEqual([3]);
    const either = analyze(db.selectFrom('orders').selectAll().where((eb) => eb.or([eb('user_id', '=', 1), eb('o.user_id' as 'user_id', '=', 2)])));
    expect(either.scopes[0]!.keys).toBeNull(); // "o" names no table of the scope
    const both = analyze(db.selectFrom('orders as o').selectAll().where((eb) => eb.or([eb('o.user_id', '=', 1), eb('user_id', '=', 2)])));
    expect(both.scopes[0]!.keys).toEqual([1, 2]);
  });

  it('leaves keys unread when the condition is not on the key or not a literal', () => {
    expect(analyze(db.selectFrom('orders').selectAll().where('id', '=', 1)).scopes[0]!.keys).toBeNull();
    expect(analyze(db.selectFrom('orders').selectAll().where('user_id', '=', sql<number>`1 + 1`)).scopes[0]!.keys).toBeNull();
    expect(analyze(db.selectFrom('orders').selectAll().where((eb) => eb.or([eb('user_id', '=', 1), eb('id', '=', 2)]))).scopes[0]!.keys).toBeNull();
  });

  it('lists the root scope first, then CTE bodies, then subqueries in reading order', () => {
    const q = db
      .with('c', (w) => w.selectFrom('items').select('order_id').where('user_id', '=', 1))
      .selectFrom('users')
      .select((eb) => eb.selectFrom('orders').select('id').where('user_id', '=', 2).limit(1).as('o'))
      .where('id', '=', 3)
      .where('id', 'in', db.selectFrom('c').select('order_id'));
    expect(analyze(q).scopes.map((s) => [s.shardedTables, s.keys])).toEqual([
      [['users'], [3]],
      [['items'], [1]],
      [['orders'], [2]],
      [[], null], // `from c` is the CTE, not a table
    ]);
  });

  it('finds sharded tables joined without equality on their keys', () => {
    expect(analyze(db.selectFrom('orders').innerJoin('items', 'items.user_id', 'orders.user_id').selectAll().where('orders.user_id', '=', 1)).scopes[0]!.unlinkedTables).toEqual([]);
    expect(analyze(db.selectFrom('orders').innerJoin('items', 'items.order_id', 'orders.id').selectAll().where('orders.user_id', '=', 1)).scopes[0]!.unlinkedTables).toEqual(['items']);
    expect(analyze(db.selectFrom(['orders', 'users']).selectAll().whereRef('users.id', '=', 'orders.user_id')).scopes[0]!.unlinkedTables).toEqual([]);
  });

  it('reads the key of every inserted row, or says why it cannot', () => {
    expect(analyze(db.insertInto('orders').values([{ user_id: 5, amount: 1 }, { user_id: 6, amount: 2 }])).insert).toEqual({ table: 'orders', column: 'user_id', rowKeys: [5, 6] });
    expect(analyze(db.insertInto('orders').values({ amount: 1 })).insert?.problem).toMatch(/does not set the shard key column "user_id"/);
    expect(analyze(db.insertInto('orders').values({ user_id: sql<number>`1 + 1`, amount: 1 })).insert?.problem).toMatch(/row 0 sets "user_id" to an expression/);
    expect(analyze(db.insertInto('orders').columns(['user_id']).expression(db.selectFrom('items').select('user_id'))).insert?.problem).toMatch(/insert … select/);
    expect(analyze(db.insertInto('countries').values({ code: 'x' })).insert).toBeUndefined();
  });

  it('reads new key values of UPDATE … SET and ON CONFLICT DO UPDATE, keeping excluded.key', () => {
    expect(analyze(db.updateTable('orders').set({ user_id: 9 }).where('user_id', '=', 1)).scopes[0]!.keyWrites).toEqual([9]);
    expect(analyze(db.updateTable('orders').set({ user_id: sql<number>`user_id + 1` }).where('user_id', '=', 1)).scopes[0]!.keyWrites).toBe('expression');
    expect(analyze(db.updateTable('orders').set({ status: 'x' }).where('user_id', '=', 1)).scopes[0]!.keyWrites).toBeUndefined();
    const upsert = (value: unknown) => db.insertInto('orders').values({ user_id: 1 }).onConflict((oc) => oc.column('id').doUpdateSet({ user_id: value as number }));
    expect(analyze(upsert(2)).scopes[0]!.keyWrites).toEqual([2]);
    expect(analyze(db.insertInto('orders').values({ user_id: 1 }).onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ user_id: eb.ref('excluded.user_id') })))).scopes[0]!.keyWrites).toBeUndefined();
  });

  it('lists writes below the root: data-modifying CTEs', () => {
    const q = db.with('d', (w) => w.deleteFrom('orders').where('user_id', '=', 1).returning('id')).with('u', (w) => w.updateTable('users').set({ name: 'x' }).where('id', '=', 1).returning('id')).selectFrom('d').selectAll();
    const analysis = analyze(q);
    expect(analysis.statement).toBe('select');
    expect(analysis.nestedWrites).toEqual([
      { kind: 'delete', table: 'orders' },
      { kind: 'update', table: 'users' },
    ]);
  });

  it('names the statement kind, with no scopes for raw SQL, DDL and MERGE', () => {
    expect(analyzeQuery(sql`select 1`.compile(db).query as RootOperationNode, lookup)).toMatchObject({ statement: 'raw', scopes: [] });
    expect(analyze(db.schema.createTable('t').addColumn('a', 'integer'))).toMatchObject({ statement: 'ddl', scopes: [] });
    expect(analyze(db.mergeInto('orders').using('items', 'items.user_id', 'orders.user_id').whenMatched().thenDelete())).toMatchObject({ statement: 'merge', scopes: [] });
    expect(analyze(db.deleteFrom('orders').where('user_id', '=', 4))).toMatchObject({ statement: 'delete', scopes: [{ keys: [4] }] });
  });

  it('keeps table names with their schema and aliases apart from CTE names', () => {
    const q = db.with('orders', (w) => w.selectFrom('items').select('order_id').where('user_id', '=', 1)).selectFrom(['orders', 'app.users as u']).selectAll();
    expect(analyze(q).scopes[0]).toMatchObject({ shardedTables: [], unshardedTables: ['app.users'] });
  });
});
