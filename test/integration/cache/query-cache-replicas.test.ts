import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { QueryCache } from '../../../src/cache/query-cache';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { countingPool, StatementLog } from '../sharding/sharded-fixture';
import { waitForReplay, withPg } from '../../support/postgres-replication';
import { connect } from './cache-fixtures';
import { directPool } from '../../support/direct-pool';

/**
 * The query cache with replica reads on (a real streaming replica whose replay is paused and
 * resumed): rows read from a replica that had not replayed the write that invalidated them are
 * never cached, for the writing instance or another one, with or without a read-your-writes context.
 */
interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
let topology: Topology;
const log = new StatementLog();
const instances: { db: Kysely<DB>; cache: TieredCache; qc: QueryCache }[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 1, redis: true });
  [shard] = (await cluster.createDatabase('qc_replicas')) as [TestShardUrls];
  topology = createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] });
  const pool = directPool({ connectionString: shard.primaryUrl });
  await pool.query('create table users (id integer primary key, name text not null)');
  await pool.query("insert into users select i, 'user ' || i from generate_series(1, 10) i");
  await pool.end();
  await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
}, 90_000);
afterAll(async () => {
  for (const i of instances) {
    await i.qc.close();
    await i.cache.close();
    await i.db.destroy();
  }
  await cluster?.stop();
});

/** One service instance: its own dialect (replica reads on, lag measured on demand), cache and query cache; Redis shared. */
async function instance(prefix: string): Promise<{ dialect: ShardedDialect; db: Kysely<DB>; cache: TieredCache; qc: QueryCache }> {
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id' },
    replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0 },
    createPool: (server) => countingPool(server.url, log),
    onPoolError: () => undefined,
  });
  const db = new Kysely<DB>({ dialect });
  const data = await connect(cluster.redis[0]!.url);
  const sub = await connect(cluster.redis[0]!.url, 'subscriber');
  const bus = new InvalidationBus({ publisher: data, subscriber: sub, channel: `${prefix}bus` });
  await bus.start();
  const cache = new TieredCache({ policies: { query_results: { ttlMillis: 60_000 } }, l2: singleRedisTier({ client: data, prefix }), bus, closeClients: [data, sub] });
  const qc = new QueryCache({ cache, writeEvents: dialect });
  instances.push({ db, cache, qc });
  return { dialect, db, cache, qc };
}

/**
 * Waits until the writer's invalidations reached Redis and the other instance (only the writer
 * publishes here, so the other one has received all it published), on the caches' own counters.
 */
async function invalidationDelivered(writer: { qc: QueryCache; cache: TieredCache }, other: { cache: TieredCache }): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    await writer.qc.settled();
    const w = writer.cache.stats();
    if (w.pendingInvalidations === 0 && other.cache.stats().bus.received === w.bus.published) return;
    if (Date.now() > until) throw new Error(`invalidation not delivered: writer ${JSON.stringify(w.bus)}, pending ${w.pendingInvalidations}; other ${JSON.stringify(other.cache.stats().bus)}`);
    await new Promise((r) => setImmediate(r));
  }
}

const setReplay = (paused: boolean) => withPg(shard.replicaUrls[0]!, (c) => c.query(paused ? 'select pg_wal_replay_pause()' : 'select pg_wal_replay_resume()'));
const replicaReads = () => log.on(shard.replicaUrls[0]!).filter((s) => s.sql.includes('"users"')).length;

test.each(['without', 'with'])('%s a read-your-writes context: 30 rounds of read, write, read while replay is paused leave 0 stale results, on the writer and on another instance', async (context) => {
  const prefix = `qcr-${context}:`;
  const a = await instance(prefix);
  const b = await instance(prefix);
  const stale: string[] = [];
  log.reset();
  for (let round = 0; round < 30; round++) {
    const id = (round % 5) + 1;
    const want = `${context} ${round}`;
    await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
    await Promise.all([a.dialect.refreshReplicas(), b.dialect.refreshReplicas()]); // the replica is measured caught up: eligible
    await setReplay(true);
    try {
      const read = (i: typeof a) => i.qc.rows(i.db, i.db.selectFrom('users').select('name').where('id', '=', id), { shardId: shard.id });
      const inContext = <T>(fn: () => Promise<T>): Promise<T> => (context === 'with' ? a.dialect.readYourWrites(fn) : fn());
      await read(b);
      await inContext(async () => {
        await read(a); // cached (from the replica, which has caught up) or loaded
        await a.db.updateTable('users').set({ name: want }).where('id', '=', id).execute();
      });
      // Even rounds: the writer reads first after its write (its own invalidation is synchronous);
      // odd rounds: another instance (no context) does, once the invalidation reached it.
      if (round % 2 === 1) await invalidationDelivered(a, b);
      const first = round % 2 === 0 ? await inContext(() => read(a)) : await read(b);
      if (first[0]?.name !== want) stale.push(`round ${round}: ${round % 2 === 0 ? 'the writer' : 'another instance'} read ${first[0]?.name} after the write`);
      await invalidationDelivered(a, b);
      for (const [who, rows] of [
        ['the writer', await inContext(() => read(a))],
        ['another instance', await read(b)],
        ['the writer outside the context', await read(a)],
      ] as const) {
        if (rows[0]?.name !== want) stale.push(`round ${round}: ${who} read ${rows[0]?.name} once the invalidation had settled`);
      }
    } finally {
      await setReplay(false);
    }
  }
  console.log(`${context} a context: 30 rounds, ${stale.length} stale; ${replicaReads()} loads read the replica`);
  expect(stale).toEqual([]);
  expect(replicaReads()).toBeGreaterThan(0); // the replica did serve loads (when it had caught up)
}, 180_000);
