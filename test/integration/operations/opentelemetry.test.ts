/**
 * Spans and metrics reach an OpenTelemetry SDK the application installed (the SDK's in-memory
 * exporters here), on a real cluster: two shards with a streaming replica each and Redis. A
 * routed point read, a scatter, a replica read, a cache miss, load and hit, and balanced calls
 * each give a span with the attributes the README lists, and the metrics carry the same story;
 * read-your-writes waits (a replica confirms; replay paused, the primary reads), replica lag in
 * bytes and seconds, and the invalidation bus's delivery lag between two cache instances too.
 */
import { metrics, trace, SpanKind } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, MetricReader, type DataPoint, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { TieredCache, singleRedisTier } from '../../../src/cache';
import { Balancer, roundRobin } from '../../../src/balancer';
import { waitForReplay } from '../../support/postgres-replication';
import { busCacheInstance, nextEvent } from '../cache/cache-fixtures';
import { directPool } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string };
}

/** A reader collected on demand. */
class OnDemandReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
const reader = new OnDemandReader({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
const meterProvider = new MeterProvider({ readers: [reader] });
void InMemoryMetricExporter; // the reader above is read directly; the exporter type documents the alternative

let cluster: TestCluster;
let shards: readonly TestShardUrls[];
let topology: Topology;
let db: Kysely<DB>;
let dialect: ShardedDialect;
let cache: TieredCache;
const REPLAY_WAIT_MILLIS = 2_000;

beforeAll(async () => {
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  cluster = await startTestCluster({ shards: 2, replicasPerShard: 1, redis: true });
  shards = await cluster.createDatabase('otel');
  topology = createTopology({ shards: shards.map((s) => ({ id: s.id, primary: s.primaryUrl, replicas: s.replicaUrls })) });
  for (const s of shards) {
    const pool = directPool({ connectionString: s.primaryUrl });
    await pool.query('create table users (id integer primary key, name text not null)');
    await pool.end();
  }
  // replayWaitMillis: long enough that a replica replays a write within it on a loaded machine.
  dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, defaultKeylessPolicy: 'scatter', replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0, replayWaitMillis: REPLAY_WAIT_MILLIS } });
  db = new Kysely<DB>({ dialect });
  await db.insertInto('users').values(Array.from({ length: 10 }, (_, i) => ({ id: i + 1, name: `user ${i + 1}` }))).execute();
  for (const s of shards) await waitForReplay(s.primaryUrl, s.replicaUrls[0]!);
  cache = new TieredCache({ policies: { users: { ttlMillis: 60_000 } }, l2: singleRedisTier({ url: cluster.redis[0]!.url, prefix: 'otel-test' }) });
}, 120_000);

afterAll(async () => {
  await cache?.close();
  await db?.destroy();
  await cluster?.stop();
  trace.disable();
  metrics.disable();
});

beforeEach(() => spans.reset());

function only(name: string): ReadableSpan {
  const found = spans.getFinishedSpans().filter((s) => s.name === name);
  expect(found).toHaveLength(1);
  return found[0]!;
}

async function dataPoints(name: string): Promise<DataPoint<unknown>[]> {
  const { resourceMetrics } = (await reader.collect()) as { resourceMetrics: ResourceMetrics };
  return resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).filter((m) => m.descriptor.name === name).flatMap((m) => m.dataPoints as DataPoint<unknown>[]);
}

describe('OpenTelemetry spans and metrics', () => {
  it('gives a routed point read a client span with the database conventions and the route', async () => {
    const owner = topology.shardForKey(4);
    // With replicas on, a read goes to the primary until the replicas were measured.
    await db.selectFrom('users').select('name').where('id', '=', 4).executeTakeFirstOrThrow();
    const span = only('SELECT users');
    expect(span.kind).toBe(SpanKind.CLIENT);
    expect(span.attributes).toMatchObject({
      'db.system.name': 'postgresql',
      'db.operation.name': 'SELECT',
      'db.collection.name': 'users',
      'kysely_scale.route.kind': 'single',
      'kysely_scale.shard.id': owner.id,
      'kysely_scale.server.role': 'primary',
      'kysely_scale.fan_out': 1,
      'kysely_scale.primary_retries': 0,
      'server.address': '127.0.0.1',
    });
    expect(span.instrumentationScope.name).toBe('kysely-scale');
    const durations = await dataPoints('db.client.operation.duration');
    expect(durations.some((p) => p.attributes['db.operation.name'] === 'SELECT' && p.attributes['kysely_scale.route.kind'] === 'single')).toBe(true);
    const reads = await dataPoints('kysely_scale.reads');
    expect(reads.find((p) => p.attributes['kysely_scale.shard.id'] === owner.id && p.attributes['kysely_scale.read.reason'] === 'no_eligible_replica')?.value).toBeGreaterThanOrEqual(1);
  });

  it('gives a scatter the shards it ran on and its fan-out', async () => {
    await db.selectFrom('users').selectAll().execute();
    const span = only('SELECT users');
    expect(span.attributes['kysely_scale.route.kind']).toBe('scatter');
    expect([...(span.attributes['kysely_scale.shard.ids'] as string[])].sort()).toEqual(shards.map((s) => s.id).sort());
    expect(span.attributes['kysely_scale.fan_out']).toBe(2);
    const fanOut = await dataPoints('kysely_scale.scatter.fan_out');
    expect(fanOut.find((p) => p.attributes['kysely_scale.route.kind'] === 'scatter')).toBeDefined();
  });

  it('names the replica role on a replica read, and counts it as a read sent to a replica', async () => {
    await dialect.refreshReplicas();
    const owner = topology.shardForKey(6);
    await db.selectFrom('users').select('name').where('id', '=', 6).executeTakeFirstOrThrow();
    const span = only('SELECT users');
    expect(span.attributes['kysely_scale.server.role']).toBe('replica');
    expect(span.attributes['kysely_scale.shard.id']).toBe(owner.id);
    const reads = await dataPoints('kysely_scale.reads');
    expect(reads.find((p) => p.attributes['kysely_scale.shard.id'] === owner.id && p.attributes['kysely_scale.server.role'] === 'replica')?.value).toBe(1);
    const lag = await dataPoints('kysely_scale.replica.lag');
    expect(lag.map((p) => p.attributes['kysely_scale.shard.id']).sort()).toEqual(shards.map((s) => s.id).sort());
    // The replica served the read, so a time bound proved it fresh enough (maxLagMillis, 30 s by default).
    const staleness = (await dataPoints('kysely_scale.replica.staleness')).find((p) => p.attributes['kysely_scale.shard.id'] === owner.id);
    expect(staleness?.value).toBeGreaterThanOrEqual(0);
    expect(staleness?.value).toBeLessThan(30);
    expect(staleness?.attributes['db.client.connection.pool.name']).toBe(shards.find((s) => s.id === owner.id)!.replicaUrls[0]);
    const pools = await dataPoints('db.client.connection.count');
    expect(pools.some((p) => p.attributes['db.client.connection.state'] === 'idle' && (p.value as number) > 0)).toBe(true);
  });

  it('measures read-your-writes waits: a replica that confirms the position, else the primary after replayWaitMillis', async () => {
    const owner = topology.shardForKey(7);
    const waitOf = async (outcome: string): Promise<{ count: number; sum: number } | undefined> => {
      const found = (await dataPoints('kysely_scale.read_your_writes.wait.duration')).find((p) => p.attributes['kysely_scale.shard.id'] === owner.id && p.attributes['kysely_scale.outcome'] === outcome);
      return found?.value as { count: number; sum: number } | undefined;
    };
    const writeThenRead = (name: string): Promise<string> =>
      dialect.readYourWrites(async () => {
        await db.updateTable('users').set({ name }).where('id', '=', 7).execute();
        return (await db.selectFrom('users').select('name').where('id', '=', 7).executeTakeFirstOrThrow()).name;
      });
    const readsOf = async (role: string, reason: string): Promise<number> =>
      ((await dataPoints('kysely_scale.reads')).find(
        (p) => p.attributes['kysely_scale.shard.id'] === owner.id && p.attributes['kysely_scale.server.role'] === role && p.attributes['kysely_scale.read.reason'] === reason,
      )?.value as number | undefined) ?? 0;
    const readSpanRole = (): unknown => spans.getFinishedSpans().filter((s) => s.name === 'SELECT users').at(-1)?.attributes['kysely_scale.server.role'];
    await dialect.refreshReplicas();
    // Checks run only on refresh: no replica is known to have replayed the write, so the read waits for one on demand.
    const replicaReadsBefore = await readsOf('replica', 'replica');
    const waitedOnPrimaryBefore = await readsOf('primary', 'read_your_writes');
    expect(await writeThenRead('seven')).toBe('seven');
    const confirmed = await waitOf('replica');
    expect(confirmed?.count).toBe(1);
    expect(confirmed!.sum).toBeLessThan(REPLAY_WAIT_MILLIS / 1000);
    // The replica that confirmed the position served the read: its span and the reads metric say so.
    expect(readSpanRole()).toBe('replica');
    expect(await readsOf('replica', 'replica')).toBe(replicaReadsBefore + 1);
    expect(await readsOf('primary', 'read_your_writes')).toBe(waitedOnPrimaryBefore);

    // Replay paused on the replica: it never confirms, and the primary answers once the wait is over.
    const replica = directPool({ connectionString: shards.find((s) => s.id === owner.id)!.replicaUrls[0]!, max: 1 });
    await replica.query('select pg_wal_replay_pause()');
    try {
      expect(await writeThenRead('seven again')).toBe('seven again');
    } finally {
      await replica.query('select pg_wal_replay_resume()');
      await replica.end();
    }
    const fellBack = await waitOf('primary');
    expect(fellBack?.count).toBe(1);
    expect(readSpanRole()).toBe('primary');
    expect(await readsOf('primary', 'read_your_writes')).toBe(waitedOnPrimaryBefore + 1);
    expect(fellBack!.sum).toBeGreaterThanOrEqual(REPLAY_WAIT_MILLIS / 1000 - 0.01);
    expect(await waitOf('unavailable')).toBeUndefined();
  }, 30_000);

  it('says which tier answered each cache call: none on a miss, the loader, then L1', async () => {
    expect(await cache.get('users', 'u:1')).toBeUndefined();
    expect(await cache.getOrLoad('users', 'u:1', async () => ({ name: 'user 1' }))).toEqual({ name: 'user 1' });
    expect(await cache.get('users', 'u:1')).toEqual({ name: 'user 1' });
    const calls = spans.getFinishedSpans().filter((s) => s.name.startsWith('cache '));
    expect(calls.map((s) => [s.name, s.attributes['kysely_scale.cache.tier'], s.attributes['kysely_scale.cache.hit']])).toEqual([
      ['cache get', 'none', false],
      ['cache getOrLoad', 'loader', false],
      ['cache get', 'l1', true],
    ]);
    expect(calls.every((s) => s.attributes['kysely_scale.cache.policy'] === 'users')).toBe(true);
    const hits = await dataPoints('kysely_scale.cache.hits');
    expect(hits.find((p) => p.attributes['kysely_scale.cache.policy'] === 'users' && p.attributes['kysely_scale.cache.tier'] === 'l1')?.value).toBe(1);
    const misses = await dataPoints('kysely_scale.cache.misses');
    expect(misses.find((p) => p.attributes['kysely_scale.cache.tier'] === 'l2')?.value).toBe(2);
    const breakers = await dataPoints('kysely_scale.cache.breaker.state');
    expect(breakers.find((p) => p.attributes['kysely_scale.cache.breaker.state'] === 'closed')?.value).toBe(1);
  });

  it('measures the bus delivery lag: published on one instance, applied on another', async () => {
    const instance = (): Promise<TieredCache> => busCacheInstance(cluster.redis[0]!.url, 'otel-test', 'profiles');
    const a = await instance();
    const b = await instance();
    try {
      const applied = nextEvent<{ policy: string; source: string }>(
        (fn) => {
          b.events.on('invalidate', fn);
          return () => void b.events.off('invalidate', fn);
        },
        (e) => e.source === 'bus' && e.policy === 'profiles',
      );
      await a.delete('profiles', 'p:1');
      await applied;
      const lag = (await dataPoints('kysely_scale.cache.bus.lag')).find((p) => p.attributes['kysely_scale.cache.bus.message.type'] === 'keys');
      const value = lag?.value as { count: number; sum: number } | undefined;
      expect(value?.count).toBe(1);
      expect(value!.sum).toBeGreaterThanOrEqual(0);
      expect(value!.sum).toBeLessThan(2); // nextEvent's deadline
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('gives a balanced call the instance and the attempt, and measures it', async () => {
    const balancer = new Balancer({ strategy: roundRobin(), instances: [{ id: 'a', address: 'http://a' }, { id: 'b', address: 'http://b' }] });
    await balancer.run(async () => 'first');
    await balancer.run(async () => 'retry elsewhere', { exclude: new Set(['a']) });
    const calls = spans.getFinishedSpans().filter((s) => s.name === 'balancer call');
    expect(calls.map((s) => [s.attributes['kysely_scale.balancer.instance'], s.attributes['kysely_scale.balancer.attempt'], s.attributes['kysely_scale.outcome']])).toEqual([
      ['a', 1, 'success'],
      ['b', 2, 'success'],
    ]);
    const durations = await dataPoints('kysely_scale.balancer.call.duration');
    expect(durations.filter((p) => p.attributes['kysely_scale.balancer.instance'] === 'b')).toHaveLength(1);
    const inFlight = await dataPoints('kysely_scale.balancer.requests.in_flight');
    expect(inFlight.find((p) => p.attributes['kysely_scale.balancer.instance'] === 'a')?.value).toBe(0);
  });
});
