/**
 * `metricsHandler()` of `kysely-scale/metrics` mounted on a plain Node.js HTTP server: after real
 * traffic (statements on a two-shard cluster, cache calls, balanced calls) a GET answers
 * Prometheus text with the statement, pool, cache and balancer families and the counts that traffic made; HEAD has no body,
 * other methods are refused; no password reaches it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Kysely } from 'kysely';
import { Pool } from 'pg';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { Balancer, roundRobin } from '../../../src/balancer';
import { TieredCache } from '../../../src/cache';
import { metricsHandler, PROMETHEUS_CONTENT_TYPE } from '../../../src/metrics';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let db: Kysely<DB>;
let server: Server;
let url: string;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2 });
  const shards = await cluster.createDatabase('metrics_handler');
  for (const s of shards) {
    const pool = new Pool({ connectionString: s.primaryUrl });
    await pool.query('create table users (id integer primary key, name text not null)');
    await pool.end();
  }
  // A password in the URL (the local cluster ignores it) must never reach the metrics.
  const withPassword = (u: string): string => u.replace('postgres://postgres@', 'postgres://postgres:hunter2pw@');
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

  it('answers HEAD without a body and refuses other methods', async () => {
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const post = await fetch(url, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });
});
