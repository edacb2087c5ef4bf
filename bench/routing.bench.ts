/**
 * Routing overhead: plain Kysely PostgresDialect against ShardedDialect with one shard, on the same
 * PostgreSQL server, point select by key from 16 concurrent clients. The two take turns in short
 * rounds (alternating which goes first), and each side's figures pool all of its rounds: on these
 * shared machines throughput moves by ±10% from one second to the next and drifts by a quarter
 * within a minute, and short interleaved rounds expose both sides to the same conditions. Plus a
 * micro-benchmark of the route decision (key extraction from the operation-node tree, slot hash,
 * shard lookup). A third side, `observed`, is the sharded dialect with an `onRoute` hook set
 * (and OpenTelemetry's API present without an SDK, as always): what leaving the hook on costs.
 */
import { Kysely, PostgresDialect, PostgresQueryCompiler, type RootOperationNode } from 'kysely';
import { Pool } from 'pg';
import { startTestCluster } from '../src/testing';
import { createTopology } from '../src/cluster/topology';
import { ShardedDialect } from '../src/sharding/dialect/sharded-dialect';
import { planRoute } from '../src/sharding/routing/route-planner';
import { resolveShardedConfig } from '../src/sharding/dialect/sharded-dialect-config';
import { SERVER_POOL_DEFAULTS } from '../src/cluster/server-pools';
import { makeReport, writeReport, type BenchReport } from './bench-report';

interface DB {
  users: { id: number; name: string };
}

const CLIENTS = 16;
const PAIRS = Number(process.env.ROUTING_PAIRS ?? 300);
const ROUND_MILLIS = Number(process.env.ROUTING_ROUND_MILLIS ?? 100);
const ROWS = 10_000;

async function load(db: Kysely<DB>, millis: number): Promise<number[]> {
  const latencies: number[] = [];
  const end = performance.now() + millis;
  let next = 1;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < end) {
        const id = (next++ % ROWS) + 1;
        const t = performance.now();
        await db.selectFrom('users').select(['id', 'name']).where('id', '=', id).executeTakeFirstOrThrow();
        latencies.push(performance.now() - t);
      }
    }),
  );
  return latencies;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
};

function routeDecisionMicros(): number {
  const topology = createTopology({ shards: [0, 1, 2, 3].map((i) => ({ id: `s${i}`, primary: `postgres://u@h${i}/db` })) });
  const { rules } = resolveShardedConfig({ topology, shardKeys: { users: 'id', orders: 'user_id' } });
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: new Pool() }) });
  const nodes: RootOperationNode[] = Array.from({ length: 1000 }, (_, i) => db.selectFrom('users').select(['id', 'name']).where('id', '=', i).toOperationNode());
  void db.destroy();
  const batchMeans: number[] = [];
  for (let batch = 0; batch < 60; batch++) {
    const t = performance.now();
    for (let i = 0; i < 10_000; i++) planRoute(nodes[i % 1000]!, undefined, topology, rules);
    batchMeans.push(((performance.now() - t) * 1000) / 10_000);
  }
  return median(batchMeans.slice(10)); // the first batches warm up the JIT
}

export async function run(): Promise<BenchReport> {
  const cluster = await startTestCluster({ shards: 1 });
  try {
    const [shard] = await cluster.createDatabase('routing_bench');
    const url = shard!.primaryUrl;
    // Both sides get the same pool settings (ShardedDialect's defaults), so the figure is the routing overhead alone.
    const poolOptions = { max: 10, idleTimeoutMillis: SERVER_POOL_DEFAULTS.idleTimeoutMillis, connectionTimeoutMillis: SERVER_POOL_DEFAULTS.connectionTimeoutMillis, application_name: SERVER_POOL_DEFAULTS.applicationName, keepAlive: true, allowExitOnIdle: true };
    const plain = new Kysely<DB>({ dialect: new PostgresDialect({ pool: new Pool({ connectionString: url, ...poolOptions }) }) });
    const sharded = new Kysely<DB>({
      dialect: new ShardedDialect({ topology: createTopology({ shards: [{ id: 'shard0', primary: url }] }), shardKeys: { users: 'id' }, pool: { max: 10 } }),
    });
    let routed = 0;
    const observed = new Kysely<DB>({
      dialect: new ShardedDialect({
        topology: createTopology({ shards: [{ id: 'shard0', primary: url }] }),
        shardKeys: { users: 'id' },
        pool: { max: 10 },
        onRoute: (event) => {
          routed += event.servers.length;
        },
      }),
    });
    await plain.schema.createTable('users').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('name', 'text').execute();
    await plain.insertInto('users').values(Array.from({ length: ROWS }, (_, i) => ({ id: i + 1, name: `user ${i + 1}` }))).execute();
    await load(plain, 1000); // warm both pools and the JIT
    await load(sharded, 1000);
    await load(observed, 1000);

    type Side = 'plain' | 'sharded' | 'observed';
    const sides: Record<Side, Kysely<DB>> = { plain, sharded, observed };
    const rounds: Record<Side, number[][]> = { plain: [], sharded: [], observed: [] };
    // Measured, not assumed: a round ends when its last in-flight query does.
    const busyMillis: Record<Side, number> = { plain: 0, sharded: 0, observed: 0 };
    // Node's own CPU (user + system) during each side's rounds; PostgreSQL's runs in other processes.
    const cpuMicros: Record<Side, number> = { plain: 0, sharded: 0, observed: 0 };
    const orders: readonly (readonly Side[])[] = [
      ['plain', 'sharded', 'observed'],
      ['sharded', 'observed', 'plain'],
      ['observed', 'plain', 'sharded'],
    ];
    for (let r = 0; r < PAIRS; r++) {
      const order = orders[r % orders.length]!;
      for (const name of order) {
        const start = performance.now();
        const cpu = process.cpuUsage();
        rounds[name].push(await load(sides[name], ROUND_MILLIS));
        const used = process.cpuUsage(cpu);
        cpuMicros[name] += used.user + used.system;
        busyMillis[name] += performance.now() - start;
      }
    }
    const latencies: Record<Side, number[]> = { plain: rounds.plain.flat(), sharded: rounds.sharded.flat(), observed: rounds.observed.flat() };
    await Promise.all([plain.destroy(), sharded.destroy(), observed.destroy()]);
    // After the load test, so its garbage and JIT state do not colour the end-to-end figures.
    const decisionMicros = routeDecisionMicros();

    const qps = (name: Side) => latencies[name].length / (busyMillis[name] / 1000);
    const p50 = (name: Side) => percentile(latencies[name], 0.5);
    const p99 = (name: Side) => percentile(latencies[name], 0.99);
    const cpuPerQuery = (name: Side) => cpuMicros[name] / latencies[name].length;
    const pairThroughputRatios = rounds.plain.map((p, i) => rounds.sharded[i]!.length / p.length);
    const ratios = {
      throughput_sharded_over_plain: qps('sharded') / qps('plain'),
      // Checks on the pooled figures: the median over pairs of rounds, and Node CPU per query.
      throughput_pair_median_sharded_over_plain: median(pairThroughputRatios),
      cpu_per_query_sharded_over_plain: cpuPerQuery('sharded') / cpuPerQuery('plain'),
      p99_sharded_over_plain: p99('sharded') / p99('plain'),
      p50_sharded_over_plain: p50('sharded') / p50('plain'),
      // The sharded dialect with onRoute set (tracing API present, no SDK).
      throughput_observed_over_plain: qps('observed') / qps('plain'),
      throughput_pair_median_observed_over_plain: median(rounds.plain.map((p, i) => rounds.observed[i]!.length / p.length)),
      cpu_per_query_observed_over_plain: cpuPerQuery('observed') / cpuPerQuery('plain'),
      p99_observed_over_plain: p99('observed') / p99('plain'),
    };
    const targets = { throughput_sharded_over_plain_min: 0.95, throughput_observed_over_plain_min: 0.95, p99_sharded_over_plain_max: 1.1, route_decision_median_micros_max: 2 };
    const report = makeReport('routing', {
      results: {
        plain_qps: qps('plain'),
        sharded_qps: qps('sharded'),
        plain_p50_ms: p50('plain'),
        sharded_p50_ms: p50('sharded'),
        plain_p99_ms: p99('plain'),
        sharded_p99_ms: p99('sharded'),
        plain_node_cpu_micros_per_query: cpuPerQuery('plain'),
        sharded_node_cpu_micros_per_query: cpuPerQuery('sharded'),
        observed_qps: qps('observed'),
        observed_p99_ms: p99('observed'),
        observed_node_cpu_micros_per_query: cpuPerQuery('observed'),
        observed_statements_seen_by_onroute: routed,
        route_decision_median_micros: decisionMicros,
        clients: CLIENTS,
        rounds_each: PAIRS,
        round_millis: ROUND_MILLIS,
      },
      ratios,
      targets,
      pass:
        ratios.throughput_sharded_over_plain >= targets.throughput_sharded_over_plain_min &&
        ratios.throughput_observed_over_plain >= targets.throughput_observed_over_plain_min &&
        ratios.p99_sharded_over_plain <= targets.p99_sharded_over_plain_max &&
        decisionMicros <= targets.route_decision_median_micros_max,
    });
    await writeReport(report);
    return report;
  } finally {
    await cluster.stop();
  }
}
