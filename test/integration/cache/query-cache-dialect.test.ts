import { startTestCluster, type TestCluster } from '../../../src/testing';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { QueryCache } from '../../../src/cache/query-cache';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { TieredCache } from '../../../src/cache/tiered-cache';
import type { WriteEvent } from '../../../src/sharding/dialect/write-event';
import { startShardedFixture, type ShardedFixture } from '../sharding/sharded-fixture';
import { connect } from './cache-fixtures';

/** The query cache hooked to the real ShardedDialect (2 PostgreSQL shards) and a real Redis. */
let f: ShardedFixture;
let redis: TestCluster;
let cache: TieredCache;
let qc: QueryCache;
/** Every write event the dialect emitted, in order. */
const events: WriteEvent[] = [];
let stopRecording: () => void = () => {};

beforeAll(async () => {
  [f, redis] = await Promise.all([startShardedFixture('query_cache_dialect'), startTestCluster({ shards: 0, redis: true })]);
  const data = await connect(redis.redis[0]!.url);
  const sub = await connect(redis.redis[0]!.url, 'subscriber');
  const bus = new InvalidationBus({ publisher: data, subscriber: sub, channel: 'qcd:bus' });
  await bus.start();
  cache = new TieredCache({ policies: { query_results: { ttlMillis: 60_000 } }, l2: singleRedisTier({ client: data, prefix: 'qcd:' }), bus, closeClients: [data, sub] });
  // The dialect is the write-event source as it is: `onWrite(listener)` is all QueryCache needs.
  qc = new QueryCache({ cache, writeEvents: f.dialect });
  stopRecording = f.dialect.onWrite((e) => void events.push(...e));
  await f.db
    .insertInto('users')
    .values(Array.from({ length: 20 }, (_, i) => ({ id: i + 1, name: `user ${i + 1}`, email: null })))
    .execute();
}, 90_000);
afterAll(async () => {
  stopRecording();
  await qc?.close();
  await cache?.close();
  await Promise.all([f?.close(), redis?.stop()]);
});

const shardOf = (id: number) => f.topology.shardForKey(id);
/** Statements that read `users` on the shard owning `id` (the fixture's StatementLog wraps the real pg clients). */
const userSelectsOn = (id: number) => f.log.on(f.shards[shardOf(id).index]!.primaryUrl).filter((s) => /^select\b/i.test(s.sql) && /"users"/.test(s.sql)).length;
/** A cached select keyed by the shard that owns `id`. */
const cachedUser = (id: number) => qc.rows(f.db, f.db.selectFrom('users').select(['id', 'name']).where('id', '=', id), { shardId: shardOf(id).id });
const nameOf = async (id: number) => (await cachedUser(id))[0]?.name;

it('serves a select keyed by its shard from the cache on the second call', async () => {
  f.log.reset();
  expect(await nameOf(1)).toBe('user 1');
  expect(userSelectsOn(1)).toBe(1);
  expect(await nameOf(1)).toBe('user 1');
  expect(userSelectsOn(1)).toBe(1); // no statement: served from the cache
  // Same SQL shape, another key on the other shard: its own entry, its own statement there.
  const other = Array.from({ length: 20 }, (_, i) => i + 1).find((id) => shardOf(id).id !== shardOf(1).id)!;
  expect(await nameOf(other)).toBe(`user ${other}`);
  expect(userSelectsOn(other)).toBe(1);
  expect(await nameOf(other)).toBe(`user ${other}`);
  expect(userSelectsOn(other)).toBe(1);
});

it('a write through the dialect invalidates it: the next read hits PostgreSQL and sees the new value', async () => {
  expect(await nameOf(2)).toBe('user 2');
  f.log.reset();
  expect(await nameOf(2)).toBe('user 2');
  expect(userSelectsOn(2)).toBe(0);
  events.length = 0;
  await f.db.updateTable('users').set({ name: 'renamed 2' }).where('id', '=', 2).execute();
  expect(events).toEqual([{ kind: 'update', table: 'users', shardId: shardOf(2).id, keys: [2] }]);
  // No wait for Redis or the bus: the writer's own reads stop using the entry when execute() returns.
  expect(await nameOf(2)).toBe('renamed 2');
  expect(userSelectsOn(2)).toBe(1);
  await qc.settled();
  expect(await nameOf(2)).toBe('renamed 2');
  expect(userSelectsOn(2)).toBe(1); // cached again
});

it('a write inside a transaction invalidates only after commit', async () => {
  expect(await nameOf(3)).toBe('user 3');
  f.log.reset();
  events.length = 0;
  await f.db.transaction().execute(async (trx) => {
    await trx.updateTable('users').set({ name: 'renamed 3' }).where('id', '=', 3).execute();
    expect(events).toEqual([]); // not committed: nothing emitted
    // Outside the transaction the old row is still the committed one, and the cache still serves it.
    expect(await nameOf(3)).toBe('user 3');
    expect(userSelectsOn(3)).toBe(0);
  });
  expect(events).toEqual([{ kind: 'update', table: 'users', shardId: shardOf(3).id, keys: [3] }]);
  expect(await nameOf(3)).toBe('renamed 3');
  expect(userSelectsOn(3)).toBe(1);
  await qc.settled();
});

it('a write inside a transaction that rolls back invalidates nothing', async () => {
  expect(await nameOf(4)).toBe('user 4');
  f.log.reset();
  events.length = 0;
  const loads = cache.stats().policies.query_results!.loads;
  const rolledBack = new Error('roll back');
  await expect(
    f.db.transaction().execute(async (trx) => {
      await trx.updateTable('users').set({ name: 'never 4' }).where('id', '=', 4).execute();
      throw rolledBack;
    }),
  ).rejects.toBe(rolledBack);
  expect(events).toEqual([]);
  expect(await nameOf(4)).toBe('user 4');
  expect(userSelectsOn(4)).toBe(0); // still served from the cache
  expect(cache.stats().policies.query_results!.loads).toBe(loads);
});

it('a write to another table leaves it cached', async () => {
  expect(await nameOf(5)).toBe('user 5');
  f.log.reset();
  events.length = 0;
  await f.db.insertInto('orders').values({ user_id: 5, amount: '12.50', status: 'new' }).execute();
  await f.db.insertInto('countries').values({ code: 'fr', name: 'France' }).execute();
  expect(events.map((e) => e.table)).toEqual(['orders', 'countries']);
  expect(events[0]!.shardId).toBe(shardOf(5).id); // same shard as the cached select
  await qc.settled();
  expect(await nameOf(5)).toBe('user 5');
  expect(userSelectsOn(5)).toBe(0);
});
