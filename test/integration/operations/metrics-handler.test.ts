/**
 * `metricsHandler()` of `kysely-scale/metrics` mounted on a plain Node.js HTTP server: after real
 * traffic (statements on a two-shard cluster with a streaming replica each, cache calls, balanced
 * calls, a read-your-writes read, bus messages between two cache instances on Redis, a slot move)
 * a GET answers Prometheus text with the statement, pool, replica, cache, bus, balancer and mover
 * families and the counts that traffic made; HEAD has no body, other methods are refused; no
 * password reaches it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { slotOf } from '../../../src/cluster/slot-hash';
import { SLOT_FUNCTIONS_SQL } from '../../../src/cluster/slot-function-sql';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { Balancer, roundRobin } from '../../../src/balancer';
import { TieredCache } from '../../../src/cache';
import { TopologyCatalog, moveSlots } from '../../../src/admin';
import { metricsHandler, PROMETHEUS_CONTENT_TYPE } from '../../../src/metrics';
import { waitForReplay } from '../../support/postgres-replication';
import { busCacheInstance, nextEvent } from '../cache/cache-fixtures';
import { directPool } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shards: readonly TestShardUrls[];
let db: Kysely<DB>;
let server: Server;
let url: string;

/** A password in the URL (the local cluster ignores it) must never reach the metrics. */
const withPassword = (u: string): string => u.replace('postgres://postgres@', 'postgres://postgres:hunter2pw@');

async function scrape(): Promise<string> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  return response.text();
}

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2, replicasPerShard: 1, redis: true });
  shards = await cluster.createDatabase('metrics_handler');
  for (const s of shards) {
    const pool = directPool({ connectionString: s.primaryUrl });
    await pool.query('create table users (id integer primary key, name text not null)');
    await pool.end();
  }
  db = new Kysely<DB>({
    dialect: new ShardedDialect({
      topology: createTopology({ shards: shards.map((s) => ({ id: s.id, primary: withPassword(s.primaryUrl) })) }),
      shardKeys: { users: 'id' },
      defaultKeylessPolicy: 'scatter',
    }),
  });
  server = createServer(metricsHandler());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
}, 90_000);

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await db?.destroy();
  await cluster?.stop();
});

/** The value of the one sample of `family` whose labels include every `labels` pair. */
function sample(text: string, family: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== family) continue;
    const present = match[3] ?? '';
    if (Object.entries(labels).every(([k, v]) => present.includes(`${k}="${v}"`))) return Number(match[4]);
  }
  return undefined;
}

describe('metricsHandler', () => {
  it('answers Prometheus text with statement, pool and balancer metrics after traffic', async () => {
    await db.insertInto('users').values(Array.from({ length: 10 }, (_, i) => ({ id: i + 1, name: `u${i + 1}` }))).execute();
    for (let id = 1; id <= 4; id++) await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow();
    await db.selectFrom('users').selectAll().execute(); // a scatter over both shards
    await db.insertInto('users').values({ id: 1, name: 'again' }).execute().catch(() => undefined); // 23505 on the shard
    await db.updateTable('users').set({ name: 'x' }).execute().catch(() => undefined); // refused by the router: a keyless write
    const balancer = new Balancer({ strategy: roundRobin(), instances: [{ id: 'a', address: 'http://svc-a' }, { id: 'b', address: 'http://svc-b' }] });
    for (let i = 0; i < 4; i++) await balancer.run(async () => 'ok');
    const cache = new TieredCache({ policies: { profiles: { levels: ['l1'], ttlMillis: 60_000 } } });
    await cache.get('profiles', 'p:1'); // miss
    await cache.getOrLoad('profiles', 'p:1', async () => 'loaded'); // miss, load
    await cache.get('profiles', 'p:1'); // L1 hit

    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(PROMETHEUS_CONTENT_TYPE);
    const text = await response.text();

    expect(sample(text, 'db_client_operation_duration_seconds_count', { db_operation_name: 'SELECT', db_collection_name: 'users', kysely_scale_route_kind: 'single' })).toBe(4);
    expect(sample(text, 'db_client_operation_duration_seconds_count', { db_operation_name: 'SELECT', kysely_scale_route_kind: 'scatter' })).toBe(1);
    expect(sample(text, 'db_client_operation_duration_seconds_count', { db_operation_name: 'INSERT', kysely_scale_route_kind: 'split' })).toBe(1);
    const selects = ['shard0', 'shard1'].map((shard) => sample(text, 'kysely_scale_statements_total', { kysely_scale_shard_id: shard, kysely_scale_server_role: 'primary', kysely_scale_outcome: 'ok', db_operation_name: 'SELECT' }) ?? 0);
    expect(selects[0]! + selects[1]!).toBe(4 + 2); // four point reads and a scatter's two parts
    expect(sample(text, 'kysely_scale_statement_errors_total', { error_type: '23505', db_operation_name: 'INSERT' })).toBe(1);
    expect(sample(text, 'kysely_scale_statement_errors_total', { kysely_scale_route_kind: 'refused' })).toBe(1);
    expect(sample(text, 'kysely_scale_scatter_fan_out_sum', { kysely_scale_route_kind: 'scatter' })).toBe(2);
    expect(sample(text, 'kysely_scale_reads_total', { kysely_scale_read_reason: 'replicas_off' })).toBeGreaterThan(0);
    expect(sample(text, 'db_client_connection_count', { db_client_connection_state: 'idle' })).toBeGreaterThan(0);
    expect(text).toMatch(/^# TYPE db_client_connection_pending_requests gauge$/m);

    expect(sample(text, 'kysely_scale_balancer_requests_total', { instance: 'a', outcome: 'success' })).toBe(2);
    expect(sample(text, 'kysely_scale_balancer_requests_total', { instance: 'b', outcome: 'success' })).toBe(2);
    expect(sample(text, 'kysely_scale_balancer_call_duration_seconds_count', { instance: 'a', outcome: 'success' })).toBe(2);
    expect(sample(text, 'kysely_scale_balancer_instance_up', { instance: 'b' })).toBe(1);
    expect(text).toMatch(/^# TYPE kysely_scale_balancer_request_duration_seconds summary$/m);

    expect(sample(text, 'kysely_scale_cache_hits_total', { kysely_scale_cache_policy: 'profiles', kysely_scale_cache_tier: 'l1' })).toBe(1);
    expect(sample(text, 'kysely_scale_cache_misses_total', { kysely_scale_cache_policy: 'profiles', kysely_scale_cache_tier: 'l1' })).toBe(2);
    expect(sample(text, 'kysely_scale_cache_loads_total', { kysely_scale_cache_policy: 'profiles', kysely_scale_outcome: 'ok' })).toBe(1);
    expect(sample(text, 'kysely_scale_cache_l1_entries', { kysely_scale_cache_policy: 'profiles' })).toBe(1);
    expect(sample(text, 'kysely_scale_cache_pending_invalidations', {})).toBe(0);
    await cache.close();

    expect(text).not.toContain('hunter2pw');
    expect(text).toContain('postgres:***@');
  });

  it('shows replica lag in bytes and seconds and read-your-writes waits', async () => {
    const replicated = new ShardedDialect({
      topology: createTopology({ shards: shards.map((s) => ({ id: s.id, primary: withPassword(s.primaryUrl), replicas: s.replicaUrls.map(withPassword) })) }),
      shardKeys: { users: 'id' },
      // Checks only on refresh; a wait long enough for a replica to replay a write on a loaded machine.
      replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0, replayWaitMillis: 2_000 },
    });
    const rdb = new Kysely<DB>({ dialect: replicated });
    try {
      for (const s of shards) await waitForReplay(s.primaryUrl, s.replicaUrls[0]!);
      await replicated.refreshReplicas();
      const owner = replicated.topology.shardForKey(11).id;
      const name = await replicated.readYourWrites(async () => {
        await rdb.insertInto('users').values({ id: 11, name: 'eleven' }).execute();
        return (await rdb.selectFrom('users').select('name').where('id', '=', 11).executeTakeFirstOrThrow()).name;
      });
      expect(name).toBe('eleven');
      const text = await scrape();
      expect(sample(text, 'kysely_scale_read_your_writes_wait_duration_seconds_count', { kysely_scale_shard_id: owner, kysely_scale_outcome: 'replica' })).toBe(1);
      expect(sample(text, 'kysely_scale_read_your_writes_wait_duration_seconds_sum', { kysely_scale_shard_id: owner, kysely_scale_outcome: 'replica' })).toBeLessThan(2);
      expect(text).toMatch(/^# TYPE kysely_scale_read_your_writes_wait_duration_seconds histogram$/m);
      for (const s of shards) {
        expect(sample(text, 'kysely_scale_replica_lag_bytes', { kysely_scale_shard_id: s.id })).toBeGreaterThanOrEqual(0);
        const seconds = sample(text, 'kysely_scale_replica_lag_seconds', { kysely_scale_shard_id: s.id });
        expect(seconds).toBeGreaterThanOrEqual(0);
        expect(seconds).toBeLessThan(30); // maxLagMillis: the replica serves reads
        expect(sample(text, 'kysely_scale_replica_eligible', { kysely_scale_shard_id: s.id })).toBe(1);
      }
      expect(text).toMatch(/^# TYPE kysely_scale_replica_lag_seconds gauge$/m);
      expect(text).not.toContain('hunter2pw');
    } finally {
      await rdb.destroy();
    }
  }, 30_000);

  it('shows the bus delivery lag between two cache instances', async () => {
    const instance = (): Promise<TieredCache> => busCacheInstance(cluster.redis[0]!.url, 'metrics-test', 'accounts');
    const a = await instance();
    const b = await instance();
    try {
      const onB = (fn: (e: { policy: string; tags?: readonly string[]; source: string }) => void): (() => void) => {
        b.events.on('invalidate', fn);
        return () => void b.events.off('invalidate', fn);
      };
      const keys = nextEvent(onB, (e) => e.source === 'bus' && e.policy === 'accounts');
      await a.delete('accounts', 'a:1');
      await keys;
      const tags = nextEvent(onB, (e) => e.source === 'bus' && e.tags !== undefined);
      await a.invalidateTags(['team:1']);
      await tags;
      const text = await scrape();
      expect(sample(text, 'kysely_scale_cache_bus_lag_seconds_count', { kysely_scale_cache_bus_message_type: 'keys' })).toBe(1);
      expect(sample(text, 'kysely_scale_cache_bus_lag_seconds_count', { kysely_scale_cache_bus_message_type: 'tags' })).toBe(1);
      expect(sample(text, 'kysely_scale_cache_bus_lag_seconds_sum', { kysely_scale_cache_bus_message_type: 'keys' })).toBeLessThan(2);
      expect(sample(text, 'kysely_scale_cache_bus_messages_total', { kysely_scale_cache_bus_direction: 'received' })).toBe(2);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('shows the progress of a slot move while it runs', async () => {
    const moveShards = await cluster.createDatabase('metrics_move');
    const [{ primaryUrl: catalogUrl }] = (await cluster.createDatabase('metrics_move_catalog')) as [TestShardUrls];
    const topology = createTopology({ shards: moveShards.map((s) => ({ id: s.id, primary: s.primaryUrl })) });
    for (const s of moveShards) {
      const pool = directPool({ connectionString: s.primaryUrl });
      await pool.query('create table users (id bigint primary key, name text not null)');
      await pool.query(SLOT_FUNCTIONS_SQL);
      const ids = Array.from({ length: 400 }, (_, i) => i).filter((id) => topology.shardForKey(id).id === s.id);
      await pool.query(`insert into users (id, name) select u, 'user ' || u from unnest($1::bigint[]) u`, [ids]);
      await pool.end();
    }
    const catalog = new TopologyCatalog({ url: catalogUrl });
    await catalog.install();
    await catalog.publish(topology, 'init');
    await catalog.close();
    const moving = Array.from({ length: 400 }, (_, i) => i).filter((id) => slotOf(id, topology.slotCount) < 512).length;
    let duringCopy = '';
    const result = await moveSlots({
      catalog: catalogUrl,
      tables: { users: 'id' },
      slots: '0-511',
      to: moveShards[1]!.id,
      hook: async (_batch, point) => {
        if (point === 'copied') duringCopy = await scrape();
      },
    });
    expect(result).toMatchObject({ ok: true, status: 'done' });
    const moveId = String(result.moveId);
    expect(moving).toBeGreaterThan(0);
    expect(sample(duringCopy, 'kysely_scale_move_rows_copied', { kysely_scale_move_id: moveId })).toBe(moving);
    expect(sample(duringCopy, 'kysely_scale_move_rows_expected', { kysely_scale_move_id: moveId })).toBeGreaterThanOrEqual(0);
    expect(sample(duringCopy, 'kysely_scale_move_batches', { kysely_scale_move_id: moveId, kysely_scale_move_phase: 'copied' })).toBe(1);
    expect(sample(duringCopy, 'kysely_scale_move_phase_duration_seconds_count', { kysely_scale_move_phase: 'capturing', kysely_scale_outcome: 'ok' })).toBe(1);
    // A finished move is no longer reported.
    expect(sample(await scrape(), 'kysely_scale_move_rows_copied', { kysely_scale_move_id: moveId })).toBeUndefined();
  }, 60_000);

  it('answers HEAD without a body and refuses other methods', async () => {
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const post = await fetch(url, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });
});
