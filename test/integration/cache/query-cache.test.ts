import { Kysely, PostgresDialect, sql } from 'kysely';
import type { PoolClient } from 'pg';
import type Redis from 'ioredis';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { QueryCache, tablesOf } from '../../../src/cache/query-cache';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { TieredCache } from '../../../src/cache/tiered-cache';
import type { WriteEvent, WriteListener } from '../../../src/sharding/dialect/write-event';
import { closeRedisClients } from '../../../src/cache/redis-client';
import { connect } from './cache-fixtures';
import { directPool } from '../../support/direct-pool';

interface DB {
  orders: { id: number; user_id: number; total: number };
  users: { id: number; name: string };
}

/** Stands in for ShardedDialect.onWrite (same contract): emits after each write below commits. */
class WriteEvents {
  private readonly listeners = new Set<WriteListener>();
  onWrite(l: WriteListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  emit(...events: WriteEvent[]): void {
    for (const l of this.listeners) l(events);
  }
}

let cluster: TestCluster;
let db: Kysely<DB>;
const clients: Redis[] = [];
const caches: TieredCache[] = [];
/** Resolves when every connection the pool opened has closed its socket. */
const pgClosed: Promise<void>[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, redis: { standalone: 1 } });
  const pool = directPool({ connectionString: cluster.shards[0]!.primary.url, max: 4 });
  // pool.end() resolves before its clients' sockets close; stopping PostgreSQL in that window sends
  // an idle client 57P01 ("terminating connection"), an unhandled pool error. Teardown waits for 'end'.
  pool.on('connect', (c: PoolClient) => void pgClosed.push(new Promise((resolve) => c.once('end', () => resolve()))));
  db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  await sql`create table orders (id int primary key, user_id int not null, total int not null)`.execute(db);
  await sql`create table users (id int primary key, name text not null)`.execute(db);
  await db.insertInto('users').values([{ id: 1, name: 'ada' }, { id: 2, name: 'bob' }]).execute();
  await db.insertInto('orders').values([{ id: 1, user_id: 1, total: 10 }]).execute();
}, 90_000);
afterAll(async () => {
  await Promise.all(caches.map((c) => c.close()));
  await closeRedisClients(clients);
  await db?.destroy();
  await Promise.all(pgClosed);
  await cluster?.stop();
});

async function appInstance(events: WriteEvents) {
  const data = await connect(cluster.redis[0]!.url);
  const sub = await connect(cluster.redis[0]!.url, 'subscriber');
  clients.push(data, sub);
  const bus = new InvalidationBus({ publisher: data, subscriber: sub, channel: 'qc:bus' });
  await bus.start();
  const cache = new TieredCache({ policies: { query_results: { ttlMillis: 60_000 } }, l2: singleRedisTier({ client: data, prefix: 'qc:' }), bus, closeClients: [data, sub] });
  caches.push(cache);
  return { cache, qc: new QueryCache({ cache, writeEvents: events, shardOf: () => 'shard0' }) };
}

it('reads the tables of a query from its operation tree', () => {
  const q = db.selectFrom('orders').innerJoin('users', 'users.id', 'orders.user_id').where('orders.id', 'in', db.selectFrom('orders as o2').select('o2.id')).selectAll();
  expect(tablesOf(q.compile().query).sort()).toEqual(['orders', 'users']);
});

it('caches rows by shard, SQL and parameters, and write events invalidate them on every instance', async () => {
  const eventsA = new WriteEvents();
  const eventsB = new WriteEvents();
  const a = await appInstance(eventsA);
  const b = await appInstance(eventsB);
  const totals = (userId: number) => db.selectFrom('orders').innerJoin('users', 'users.id', 'orders.user_id').select(['users.name', 'orders.total']).where('orders.user_id', '=', userId);

  expect(await a.qc.rows(db, totals(1))).toEqual([{ name: 'ada', total: 10 }]);
  expect(await a.qc.rows(db, totals(2))).toEqual([]); // other parameters, other entry
  expect(await b.qc.rows(db, totals(1))).toEqual([{ name: 'ada', total: 10 }]); // L2 hit on B
  expect(b.cache.stats().policies.query_results!.l2.hits).toBe(1);

  // A write through instance A; its dialect emits the event after commit.
  await db.updateTable('orders').set({ total: 99 }).where('id', '=', 1).execute();
  const busSeen = new Promise<void>((resolve) => b.cache.events.once('bus', () => resolve()));
  eventsA.emit({ kind: 'update', table: 'orders', shardId: 'shard0', keys: [1] });
  // A's own reads stop serving the old rows at once (local epochs move synchronously).
  expect(await a.qc.rows(db, totals(1))).toEqual([{ name: 'ada', total: 99 }]);
  await a.qc.settled();
  await busSeen;
  expect(await b.qc.rows(db, totals(1))).toEqual([{ name: 'ada', total: 99 }]);

  // A write to users invalidates the join as well; a write to another shard's orders does not touch shard0's entries.
  const loadsBefore = b.cache.stats().policies.query_results!.loads;
  eventsB.emit({ kind: 'update', table: 'orders', shardId: 'shard7', keys: null });
  await b.qc.settled();
  await b.qc.rows(db, totals(1));
  expect(b.cache.stats().policies.query_results!.loads).toBe(loadsBefore);
  await db.updateTable('users').set({ name: 'ada l.' }).where('id', '=', 1).execute();
  eventsB.emit({ kind: 'update', table: 'users', shardId: 'shard0', keys: [1] });
  await b.qc.settled();
  expect(await b.qc.rows(db, totals(1))).toEqual([{ name: 'ada l.', total: 99 }]);

  // Raw SQL with an unknown table invalidates every cached result.
  eventsB.emit({ kind: 'raw', table: null, shardId: 'shard0', keys: null });
  await b.qc.settled();
  const loads = b.cache.stats().policies.query_results!.loads;
  await b.qc.rows(db, totals(2));
  expect(b.cache.stats().policies.query_results!.loads).toBe(loads + 1);
  await a.qc.close();
  await b.qc.close();
  await a.cache.close();
  await b.cache.close();
});
