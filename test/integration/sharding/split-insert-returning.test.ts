/**
 * An insert split over shards with ON CONFLICT DO NOTHING … RETURNING returns its rows in VALUES
 * order, also when a shard skips some of them (a conflict): rows are placed by the keys they
 * return, and where a skipped row could be either of two equal keys on both sides of another
 * shard's row, that shard runs its rows one run at a time.
 */
import { startShardedFixture, startSingleDatabase, type DB, type ShardedFixture } from './sharded-fixture';
import type { Kysely } from 'kysely';

let f: ShardedFixture;
let single: Kysely<DB>;
beforeAll(async () => {
  f = await startShardedFixture('split_insert_returning', {}, 3);
  single = await startSingleDatabase(f.cluster, 'split_insert_returning_single');
}, 120_000);
afterAll(async () => {
  await single?.destroy();
  await f?.close();
});

/** `count` keys owned by shard `index`, starting the search at `from`. */
function keysOn(index: number, count: number, from: number): number[] {
  const keys: number[] = [];
  for (let k = from; keys.length < count; k++) if (f.topology.shardForKey(k).index === index) keys.push(k);
  return keys;
}

test('the issue’s case: a shard skips a conflicting row, the others keep VALUES order', async () => {
  const [a1, a2] = keysOn(0, 2, 1000);
  const [b1, b2] = keysOn(1, 2, 1000);
  const rows = [a1!, b1!, a2!, b2!].map((id) => ({ id, name: `u${id}`, email: null }));
  for (const db of [f.db, single]) await db.insertInto('users').values({ id: b2!, name: 'present', email: null }).execute();
  const run = (db: Kysely<DB>) => db.insertInto('users').values(rows).onConflict((oc) => oc.doNothing()).returning(['id', 'name']).execute();
  const [sharded, expected] = await Promise.all([run(f.db), run(single)]);
  expect(expected.map((r) => Number(r.id))).toEqual([a1, b1, a2]);
  expect(sharded).toEqual(expected);
});

test('equal keys on both sides of another shard’s row: the skipped one is told apart, rows in VALUES order', async () => {
  const [u] = keysOn(0, 1, 2000);
  const [v] = keysOn(1, 1, 2000);
  for (const db of [f.db, single]) await db.insertInto('orders').values({ id: 1, user_id: u!, amount: '1.00' }).execute();
  const run = (db: Kysely<DB>) =>
    db
      .insertInto('orders')
      .values([{ id: 1, user_id: u!, amount: '2.00' }, { id: 1, user_id: v!, amount: '3.00' }, { id: 2, user_id: u!, amount: '4.00' }, { id: 3, user_id: u!, amount: '5.00' }])
      .onConflict((oc) => oc.doNothing())
      .returning(['id', 'user_id', 'amount'])
      .execute();
  const [sharded, expected] = await Promise.all([run(f.db), run(single)]);
  expect(expected.map((r) => r.amount)).toEqual(['3.00', '4.00', '5.00']);
  expect(sharded).toEqual(expected);
  // ON CONFLICT DO UPDATE … WHERE skips rows too.
  const update = (db: Kysely<DB>) =>
    db
      .insertInto('orders')
      .values([{ id: 2, user_id: u!, amount: '9.00' }, { id: 9, user_id: v!, amount: '9.50' }, { id: 3, user_id: u!, amount: '9.90' }])
      .onConflict((oc) => oc.columns(['user_id', 'id']).doUpdateSet((eb) => ({ amount: eb.ref('excluded.amount') })).where('orders.amount', '<', '5.00'))
      .returning(['id', 'amount'])
      .execute();
  const [updatedSharded, updatedExpected] = await Promise.all([update(f.db), update(single)]);
  expect(updatedExpected.map((r) => r.amount)).toEqual(['9.00', '9.50']);
  expect(updatedSharded).toEqual(updatedExpected);
});

test('no row skipped, no RETURNING: results unchanged (affected counts summed, no hidden column)', async () => {
  const keys = [...keysOn(0, 2, 3000), ...keysOn(2, 2, 3000)];
  const result = await f.db.insertInto('users').values(keys.map((id) => ({ id, name: 'n', email: null }))).returningAll().execute();
  expect(result.map((r) => Number(r.id))).toEqual(keys);
  expect(Object.keys(result[0]!).sort()).toEqual(['email', 'id', 'name']);
  const counted = await f.db.insertInto('users').values(keys.map((id) => ({ id, name: 'n', email: null }))).onConflict((oc) => oc.doNothing()).executeTakeFirst();
  expect(counted.numInsertedOrUpdatedRows).toBe(0n);
});
