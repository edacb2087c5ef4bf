/**
 * The replica read path of the dialect on a real primary and streaming replica: the latency it
 * reports to the replica strategy is read from the injected clock, and a replica that cannot be
 * reached is reported as failed while the primary answers the read.
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ManualClock } from '../../../src/kernel/clock';
import { leastConnections } from '../../../src/balancer/strategies/least-connections';
import type { Strategy } from '../../../src/balancer/balancer-strategy';
import type { PoolLike } from '../../../src/cluster/server-pools';
import { interceptingPool, StatementLog, countingPool } from './sharded-fixture';
import { waitForReplay } from '../../support/postgres-replication';
import { directPool } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
const open: Kysely<DB>[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 1 });
  [shard] = (await cluster.createDatabase('replica_read')) as [TestShardUrls];
  const pool = directPool({ connectionString: shard.primaryUrl });
  await pool.query('create table users (id integer primary key, name text not null)');
  await pool.query("insert into users select i, 'user ' || i from generate_series(1, 20) i");
  await pool.end();
  await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.destroy()));
  await cluster?.stop();
});

/** A strategy that records every outcome the dialect reports, choosing as leastConnections() does. */
function recordingStrategy(outcomes: { latencyMillis: number; ok: boolean }[]): Strategy {
  const inner = leastConnections();
  return { name: 'recording', pick: (candidates, request) => inner.pick(candidates, request), onComplete: (_instance, outcome) => outcomes.push(outcome) };
}

async function connect(clock: ManualClock, outcomes: { latencyMillis: number; ok: boolean }[], replicaPool: (url: string) => PoolLike, log: StatementLog): Promise<Kysely<DB>> {
  const topology = createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] });
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id' },
    clock,
    replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0, strategy: recordingStrategy(outcomes) },
    createPool: (server) => (server.url === shard.primaryUrl ? countingPool(server.url, log) : replicaPool(server.url)),
    onPoolError: () => undefined,
  });
  const db = new Kysely<DB>({ dialect });
  open.push(db);
  await dialect.refreshReplicas();
  return db;
}

describe('replica reads', () => {
  it('reports each read’s latency as measured on the injected clock', async () => {
    const clock = new ManualClock();
    const outcomes: { latencyMillis: number; ok: boolean }[] = [];
    // The replica's real client moves the clock 25 ms forward while a read of users runs on it.
    const slowOnTheClock = (url: string) =>
      interceptingPool(url, (sql) => {
        if (sql.includes('"users"')) clock.advance(25);
        return undefined;
      });
    const db = await connect(clock, outcomes, slowOnTheClock, new StatementLog());
    for (let id = 1; id <= 3; id++) expect((await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow()).name).toBe(`user ${id}`);
    expect(outcomes).toEqual([
      { latencyMillis: 25, ok: true },
      { latencyMillis: 25, ok: true },
      { latencyMillis: 25, ok: true },
    ]);
  });

  it('reports an unreachable replica as failed, with the clock’s latency, and reads from the primary', async () => {
    const clock = new ManualClock();
    const outcomes: { latencyMillis: number; ok: boolean }[] = [];
    const log = new StatementLog();
    const dropping = (url: string) =>
      interceptingPool(url, (sql) => {
        if (!sql.includes('"users"')) return undefined;
        clock.advance(7);
        return Object.assign(new Error('injected: Connection terminated unexpectedly'), { code: 'ECONNRESET' });
      });
    const db = await connect(clock, outcomes, dropping, log);
    expect((await db.selectFrom('users').select('name').where('id', '=', 4).executeTakeFirstOrThrow()).name).toBe('user 4');
    expect(outcomes).toEqual([{ latencyMillis: 7, ok: false }]);
    expect(log.on(shard.primaryUrl).filter((s) => s.sql.includes('"users"'))).toHaveLength(1);
  });
});
