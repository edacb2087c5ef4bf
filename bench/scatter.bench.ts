/**
 * Scatter cost: the same query through ShardedDialect over 4 shards and through Kysely's
 * PostgresDialect on one database holding all rows, all five databases on the same PostgreSQL
 * server (so the figure is the scatter's own cost, not more hardware). Three shapes:
 * ORDER BY + LIMIT (each shard's top rows by index, merged exactly), GROUP BY with aggregates
 * (partial aggregates per shard, merged), and a streamed ordered scatter (a k-way merge of four
 * cursors). The two sides take turns query by query (alternating which goes first); the figure is
 * each side's p50 latency of one query at a time, as a ratio. `SCATTER_ITERATIONS` (default 400)
 * and `SCATTER_ROWS` (default 40,000) change the run.
 */
import { Kysely, PostgresDialect } from 'kysely';
import { Pool } from 'pg';
import Cursor from 'pg-cursor';
import { startTestCluster } from '../src/testing';
import { createTopology } from '../src/cluster/topology';
import { ShardedDialect } from '../src/sharding/dialect/sharded-dialect';
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

const SHAPES: Readonly<Record<Shape, (db: Kysely<DB>) => Promise<unknown[]>>> = {
  order_limit: (db) => db.selectFrom('events').select(['id', 'user_id', 'amount', 'at']).orderBy('at', 'desc').orderBy('id').limit(20).execute(),
  group_by: (db) =>
    db
      .selectFrom('events')
      .select((eb) => ['status', eb.fn.countAll().as('n'), eb.fn.sum('amount').as('total'), eb.fn.avg('amount').as('mean'), eb.fn.max('at').as('last')])
      .groupBy('status')
      .orderBy('status')
      .execute(),
  stream_ordered: async (db) => {
    const rows: unknown[] = [];
    for await (const row of db.selectFrom('events').select(['id', 'user_id', 'amount']).orderBy('id').limit(STREAM_ROWS).stream(500)) rows.push(row);
    return rows;
  },
};

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

    const latencies: Record<Shape, { single: number[]; sharded: number[] }> = {
      order_limit: { single: [], sharded: [] },
      group_by: { single: [], sharded: [] },
      stream_ordered: { single: [], sharded: [] },
    };
    const time = async (db: Kysely<DB>, shape: Shape): Promise<number> => {
      const started = performance.now();
      await SHAPES[shape](db);
      return performance.now() - started;
    };
    for (const shape of Object.keys(SHAPES) as Shape[]) {
      // The figures compare equal work: both sides return the same rows.
      const [a, b] = [JSON.stringify(await SHAPES[shape](single)), JSON.stringify(await SHAPES[shape](sharded))];
      if (a !== b) throw new Error(`${shape}: the scatter returned other rows than the single database`);
      for (let i = 0; i < 20; i++) {
        await time(single, shape);
        await time(sharded, shape);
      }
      for (let i = 0; i < ITERATIONS; i++) {
        const order = i % 2 === 0 ? (['single', 'sharded'] as const) : (['sharded', 'single'] as const);
        for (const side of order) latencies[shape][side].push(await time(side === 'single' ? single : sharded, shape));
      }
    }
    await Promise.all([single.destroy(), sharded.destroy()]);

    const results: Record<string, number> = { shards: SHARDS, rows: ROWS, iterations: ITERATIONS, stream_rows: STREAM_ROWS };
    const ratios: Record<string, number> = {};
    for (const shape of Object.keys(SHAPES) as Shape[]) {
      const { single: s, sharded: d } = latencies[shape];
      results[`${shape}_single_p50_ms`] = percentile(s, 0.5);
      results[`${shape}_sharded_p50_ms`] = percentile(d, 0.5);
      results[`${shape}_single_p99_ms`] = percentile(s, 0.99);
      results[`${shape}_sharded_p99_ms`] = percentile(d, 0.99);
      ratios[`${shape}_p50_sharded_over_single`] = percentile(d, 0.5) / percentile(s, 0.5);
    }
    const targets = { p50_sharded_over_single_max: TARGET_P50_RATIO };
    const report = makeReport('scatter', { results, ratios, targets, pass: Object.values(ratios).every((r) => r <= TARGET_P50_RATIO) });
    await writeReport(report);
    return report;
  } finally {
    await Promise.all(pools.map((p) => p.end()));
    await cluster.stop();
  }
}
