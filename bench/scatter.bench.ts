/**
 * Scatter cost: the same query through ShardedDialect over 4 shards and through Kysely's
 * PostgresDialect on one database holding all rows, all five databases on the same PostgreSQL
 * server (so the figure is the scatter's own cost, not more hardware). Three shapes:
 * ORDER BY + LIMIT (each shard's top rows by index, merged exactly), GROUP BY with aggregates
 * (partial aggregates per shard, merged), and a streamed ordered scatter (a k-way merge of four
 * cursors). The two sides take turns query by query (alternating which goes first); the figure is
 * each side's p50 latency of one query at a time, as a ratio. `SCATTER_ITERATIONS` (default 400)
 * and `SCATTER_ROWS` (default 40,000) change the run.
 *
 * A third side, the floor, takes turns too for the two shapes that run with execute(): the very
 * statements the dialect sends to the shards (hidden merge columns included, as prepared
 * statements), sent with raw pg to the four shards at once, rows not merged. No scatter can cost less; sharded / floor is what the
 * dialect itself adds (Kysely, routing, the merge), single / floor what parallelism could win.
 *
 * A fourth side, the fan-out, for the same two shapes: the user's own statement (no hidden
 * columns) sent with raw pg to the four shards at once, rows not merged. It is what any four-shard
 * scatter costs on this machine before anything of a router: when fan-out / single is above the
 * target, the target cannot be met here (four databases' work on two cores), whatever the dialect does.
 */
import { Kysely, PostgresDialect, PostgresQueryCompiler, type CompiledQuery } from 'kysely';
import { Pool } from 'pg';
import Cursor from 'pg-cursor';
import { startTestCluster } from '../src/testing';
import { createTopology } from '../src/cluster/topology';
import { ShardedDialect } from '../src/sharding/dialect/sharded-dialect';
import { planScatter } from '../src/sharding/scatter/scatter-plan';
import { makeReport, writeReport, type BenchReport } from './bench-report';

interface DB {
  events: { id: number; user_id: number; status: string; amount: string; at: Date };
}

const SHARDS = 4;
const ROWS = Number(process.env.SCATTER_ROWS ?? 40_000);
const ITERATIONS = Number(process.env.SCATTER_ITERATIONS ?? 400);
const STREAM_ROWS = 2_000;
const TARGET_P50_RATIO = 1.3;

type Shape = 'order_limit' | 'group_by' | 'stream_ordered';

const orderLimit = (db: Kysely<DB>) => db.selectFrom('events').select(['id', 'user_id', 'amount', 'at']).orderBy('at', 'desc').orderBy('id').limit(20);
const groupBy = (db: Kysely<DB>) =>
  db
    .selectFrom('events')
    .select((eb) => ['status', eb.fn.countAll().as('n'), eb.fn.sum('amount').as('total'), eb.fn.avg('amount').as('mean'), eb.fn.max('at').as('last')])
    .groupBy('status')
    .orderBy('status');

const SHAPES: Readonly<Record<Shape, (db: Kysely<DB>) => Promise<unknown[]>>> = {
  order_limit: (db) => orderLimit(db).execute(),
  group_by: (db) => groupBy(db).execute(),
  stream_ordered: async (db) => {
    const rows: unknown[] = [];
    for await (const row of db.selectFrom('events').select(['id', 'user_id', 'amount']).orderBy('id').limit(STREAM_ROWS).stream(500)) rows.push(row);
    return rows;
  },
};

/** The shapes with a floor, and the statement each shard runs for them. */
const FLOOR_SHAPES: Partial<Record<Shape, (db: Kysely<DB>) => CompiledQuery>> = {
  order_limit: (db) => shardStatement(orderLimit(db).compile()),
  group_by: (db) => shardStatement(groupBy(db).compile()),
};

function shardStatement(compiled: CompiledQuery): CompiledQuery {
  return new PostgresQueryCompiler().compileQuery(planScatter(compiled.query, { isJoinSafe: () => true }).shardNode, compiled.queryId);
}

const percentile = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
};

async function createSchema(db: Kysely<DB>): Promise<void> {
  await db.schema
    .createTable('events')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('user_id', 'integer', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('amount', 'numeric(12, 2)', (c) => c.notNull())
    .addColumn('at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('events_at_id').on('events').columns(['at desc', 'id']).execute();
}

const USERS = 5000;

/** Loads the rows with generate_series: all of them, or those whose user_id is in `users` (a shard's). */
async function load(pool: Pool, users?: readonly number[]): Promise<void> {
  await pool.query(
    `insert into events (id, user_id, status, amount, at)
     select i, 1 + (i * 7919) % ${USERS}, (array['new','paid','shipped','refunded','void'])[1 + i % 5],
            ((i * 37) % 100000) / 100.0, timestamptz '2026-01-01' + (i * 7717 % 100000) * interval '1 second' + (i % 997) * interval '1 microsecond'
     from generate_series(1, ${ROWS}) as i ${users === undefined ? '' : `where 1 + (i * 7919) % ${USERS} = any($1::int[])`}`,
    users === undefined ? [] : [users],
  );
  await pool.query('analyze events');
}

export async function run(): Promise<BenchReport> {
  const cluster = await startTestCluster({ shards: 1 });
  const pools: Pool[] = [];
  try {
    // Five databases of one server: the reference and four shards.
    const singleUrl = (await cluster.createDatabase('scatter_single'))[0]!.primaryUrl;
    const shardUrls: string[] = [];
    for (let i = 0; i < SHARDS; i++) shardUrls.push((await cluster.createDatabase(`scatter_shard${i}`))[0]!.primaryUrl);
    const topology = createTopology({ shards: shardUrls.map((url, i) => ({ id: `shard${i}`, primary: url })) });
    const single = new Kysely<DB>({ dialect: new PostgresDialect({ pool: new Pool({ connectionString: singleUrl, max: 10 }), cursor: Cursor }) });
    const sharded = new Kysely<DB>({
      dialect: new ShardedDialect({ topology, shardKeys: { events: 'user_id' }, keylessPolicy: { events: 'scatter' }, pool: { max: 10 }, cursor: Cursor }),
    });
    await createSchema(single);
    await createSchema(sharded); // DDL runs on every shard
    const direct = (url: string) => {
      const pool = new Pool({ connectionString: url, max: 1 });
      pool.on('error', () => undefined);
      pools.push(pool);
      return pool;
    };
    await load(direct(singleUrl));
    // Each shard holds the rows of the users its slots own.
    const usersOf = shardUrls.map(() => [] as number[]);
    for (let user = 1; user <= USERS; user++) usersOf[topology.shardForKey(user).index]!.push(user);
    for (const [i, url] of shardUrls.entries()) await load(direct(url), usersOf[i]);
    const counted = await sharded.selectFrom('events').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    if (Number(counted.n) !== ROWS) throw new Error(`the shards hold ${counted.n} rows, expected ${ROWS}`);

    type Side = 'single' | 'sharded' | 'floor' | 'fan_out';
    const latencies: Record<Shape, Record<Side, number[]>> = {
      order_limit: { single: [], sharded: [], floor: [], fan_out: [] },
      group_by: { single: [], sharded: [], floor: [], fan_out: [] },
      stream_ordered: { single: [], sharded: [], floor: [], fan_out: [] },
    };
    const floorPools = shardUrls.map((url) => {
      const pool = new Pool({ connectionString: url, max: 10 });
      pool.on('error', () => undefined); // idle clients told to end when the cluster stops
      pools.push(pool);
      return pool;
    });
    // Compiled once: the floor pays for sending and receiving only.
    const floorStatements: Partial<Record<Shape, CompiledQuery>> = {};
    const fanOutStatements: Partial<Record<Shape, CompiledQuery>> = { order_limit: orderLimit(single).compile(), group_by: groupBy(single).compile() };
    for (const [shape, statement] of Object.entries(FLOOR_SHAPES)) floorStatements[shape as Shape] = statement(single);
    const run = (side: Side, shape: Shape): Promise<unknown> => {
      if (side === 'single') return SHAPES[shape](single);
      if (side === 'sharded') return SHAPES[shape](sharded);
      if (side === 'floor') {
        // As the dialect sends them: prepared statements, parsed once per pooled connection.
        const statement = floorStatements[shape]!;
        return Promise.all(floorPools.map((pool) => pool.query({ name: `floor_${shape}`, text: statement.sql, values: [...statement.parameters] })));
      }
      const statement = fanOutStatements[shape]!;
      return Promise.all(floorPools.map((pool) => pool.query(statement.sql, [...statement.parameters])));
    };
    const time = async (side: Side, shape: Shape): Promise<number> => {
      const started = performance.now();
      await run(side, shape);
      return performance.now() - started;
    };
    for (const shape of Object.keys(SHAPES) as Shape[]) {
      // The figures compare equal work: both sides return the same rows.
      const [a, b] = [JSON.stringify(await SHAPES[shape](single)), JSON.stringify(await SHAPES[shape](sharded))];
      if (a !== b) throw new Error(`${shape}: the scatter returned other rows than the single database`);
      const sides: Side[] = FLOOR_SHAPES[shape] === undefined ? ['single', 'sharded'] : ['single', 'sharded', 'floor', 'fan_out'];
      for (let i = 0; i < 20; i++) for (const side of sides) await time(side, shape);
      for (let i = 0; i < ITERATIONS; i++) {
        // Each side goes first, second (and third) equally often.
        const order = sides.map((_, j) => sides[(i + j) % sides.length]!);
        for (const side of order) latencies[shape][side].push(await time(side, shape));
      }
    }
    await Promise.all([single.destroy(), sharded.destroy()]);

    const results: Record<string, number> = { shards: SHARDS, rows: ROWS, iterations: ITERATIONS, stream_rows: STREAM_ROWS };
    const ratios: Record<string, number> = {};
    for (const shape of Object.keys(SHAPES) as Shape[]) {
      const { single: s, sharded: d, floor: f, fan_out: o } = latencies[shape];
      results[`${shape}_single_p50_ms`] = percentile(s, 0.5);
      results[`${shape}_sharded_p50_ms`] = percentile(d, 0.5);
      results[`${shape}_single_p99_ms`] = percentile(s, 0.99);
      results[`${shape}_sharded_p99_ms`] = percentile(d, 0.99);
      ratios[`${shape}_p50_sharded_over_single`] = percentile(d, 0.5) / percentile(s, 0.5);
      if (f.length > 0) {
        results[`${shape}_floor_p50_ms`] = percentile(f, 0.5);
        ratios[`${shape}_p50_floor_over_single`] = percentile(f, 0.5) / percentile(s, 0.5);
        ratios[`${shape}_p50_sharded_over_floor`] = percentile(d, 0.5) / percentile(f, 0.5);
      }
      if (o.length > 0) {
        results[`${shape}_fan_out_p50_ms`] = percentile(o, 0.5);
        ratios[`${shape}_p50_fan_out_over_single`] = percentile(o, 0.5) / percentile(s, 0.5);
      }
    }
    const judged = Object.keys(SHAPES).map((shape) => ratios[`${shape}_p50_sharded_over_single`]!);
    const targets = { p50_sharded_over_single_max: TARGET_P50_RATIO };
    const report = makeReport('scatter', { results, ratios, targets, pass: judged.every((r) => r <= TARGET_P50_RATIO) });
    await writeReport(report);
    return report;
  } finally {
    await Promise.all(pools.map((p) => p.end()));
    await cluster.stop();
  }
}
