/**
 * Scatter merges against real PostgreSQL: the same 1,200 rows split over three shard databases
 * and held whole in a fourth ("single"); every supported query must merge to exactly the rows the
 * single database returns.
 */
import {
  createQueryId,
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type SelectQueryBuilder,
  type SelectQueryNode,
} from 'kysely';
import { Pool } from 'pg';
import Cursor from 'pg-cursor';
import { planScatter } from '../../../src/sharding/scatter/scatter-plan';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { quietPool } from './sharded-fixture';
import { builtInTypes, mergeResults } from '../../support/scatter-types';

interface Items {
  id: number;
  grp: string | null;
  region: string | null;
  score: number | null;
  big: string | null;
  amount: string | null;
  price: string | null;
  flag: boolean;
}

const db = new Kysely<{ items: Items }>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (k) => new PostgresIntrospector(k),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});
const compiler = new PostgresQueryCompiler();
const SHARDS = 3;
const ROWS = 1200;

/** Deterministic pseudo-random numbers, so a failure reproduces. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

function makeRows(): Items[] {
  const next = random(7);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(next() * values.length)] as T;
  // Text beyond U+FFFF and in U+E000..U+FFFF checks code-point (not UTF-16) order.
  const regions = ['north', 'North', 'south', 'éast', 'west', 'zeta', '😀 emoji', '\uff21 fullwidth', 'a', 'ab', null];
  const rows: Items[] = [];
  for (let id = 1; id <= ROWS; id++) {
    const bigBase = pick([9007199254740993n, -9007199254740993n, 42n, -7n, 123456789012345678n]);
    rows.push({
      id,
      grp: pick(['red', 'green', 'blue', 'Blue', null]),
      region: pick(regions),
      score: next() < 0.1 ? null : Math.floor(next() * 200) - 100,
      big: next() < 0.1 ? null : String(bigBase + BigInt(Math.floor(next() * 1000))),
      amount: next() < 0.1 ? null : pick(['1.5', '-2.25', '0.001', '100', '3.14159', '-0.5', '7.10', '1e-3']),
      price: next() < 0.1 ? null : (Math.floor(next() * 100000) / 100 - 300).toFixed(2),
      flag: next() < 0.5,
    });
  }
  return rows;
}

const DDL = `create table items (
  id int primary key, grp text, region text, score int, big bigint,
  amount numeric, price numeric(12,2), flag boolean not null)`;

async function load(pool: Pool, rows: readonly Items[]): Promise<void> {
  await pool.query(DDL);
  const columns = ['id', 'grp', 'region', 'score', 'big', 'amount', 'price', 'flag'] as const;
  for (let start = 0; start < rows.length; start += 300) {
    const chunk = rows.slice(start, start + 300);
    const values: unknown[] = [];
    const tuples = chunk.map((row, r) => `(${columns.map((c, i) => { values.push(row[c]); return `$${r * columns.length + i + 1}`; }).join(',')})`);
    if (chunk.length > 0) await pool.query(`insert into items (${columns.join(',')}) values ${tuples.join(',')}`, values);
  }
}

let cluster: TestCluster;
let single: Pool;
let shards: Pool[];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: SHARDS });
  const shardUrls = await cluster.createDatabase('scatter_shards');
  const singleUrls = await cluster.createDatabase('scatter_single');
  single = quietPool(singleUrls[0]!.primaryUrl);
  shards = shardUrls.map((urls) => quietPool(urls.primaryUrl));
  const rows = makeRows();
  await load(single, rows);
  await Promise.all(shards.map((pool, i) => load(pool, rows.filter((row) => row.id % SHARDS === i))));
}, 120_000);

afterAll(async () => {
  await Promise.all([single, ...shards].map((pool) => pool?.end()));
  await cluster?.stop();
});

type Query = SelectQueryBuilder<{ items: Items }, 'items', object>;

async function runSingle(node: SelectQueryNode): Promise<Record<string, unknown>[]> {
  const compiled = compiler.compileQuery(node, createQueryId());
  return (await single.query(compiled.sql, [...compiled.parameters])).rows;
}

async function runScatter(node: SelectQueryNode): Promise<Record<string, unknown>[]> {
  const plan = planScatter(node);
  const compiled = compiler.compileQuery(plan.shardNode, createQueryId());
  return mergeResults(plan, await Promise.all(shards.map((pool) => pool.query(compiled.sql, [...compiled.parameters]))));
}

async function expectSameAsSingle(query: Query): Promise<Record<string, unknown>[]> {
  const node = query.toOperationNode();
  const [expected, actual] = await Promise.all([runSingle(node), runScatter(node)]);
  expect(actual).toEqual(expected);
  return expected;
}

test('the shards run with the C collation the merge assumes', async () => {
  const { rows } = await (shards[0] as Pool).query('show lc_collate');
  expect(rows[0].lc_collate).toBe('C');
});

describe('ORDER BY, LIMIT and OFFSET', () => {
  test('several columns, asc and desc, default null placement', async () => {
    const rows = await expectSameAsSingle(db.selectFrom('items').selectAll().orderBy('score', 'desc').orderBy('big').orderBy('id'));
    expect(rows).toHaveLength(ROWS);
  });

  test('explicit nulls first and last in both directions', async () => {
    await expectSameAsSingle(
      db.selectFrom('items').select(['id', 'score', 'big', 'amount'])
        .orderBy('score', (ob) => ob.asc().nullsFirst())
        .orderBy('amount', (ob) => ob.desc().nullsLast())
        .orderBy('id', 'desc'),
    );
    await expectSameAsSingle(
      db.selectFrom('items').select(['id', 'big']).orderBy('big', (ob) => ob.desc().nullsFirst()).orderBy('id'),
    );
    await expectSameAsSingle(
      db.selectFrom('items').select(['id', 'big']).orderBy('big', (ob) => ob.asc().nullsLast()).orderBy('id'),
    );
  });

  test('text in code-point order, bigint and numeric strings numerically', async () => {
    await expectSameAsSingle(db.selectFrom('items').select(['id', 'region']).orderBy('region').orderBy('id'));
    await expectSameAsSingle(db.selectFrom('items').select(['id', 'big']).orderBy('big', 'desc').orderBy('id'));
    await expectSameAsSingle(db.selectFrom('items').select(['id', 'amount', 'price']).orderBy('amount').orderBy('price', 'desc').orderBy('id'));
  });

  test('limit and offset', async () => {
    await expectSameAsSingle(db.selectFrom('items').selectAll().orderBy('amount', 'desc').orderBy('id').limit(25).offset(40));
    await expectSameAsSingle(db.selectFrom('items').select(['id', 'big']).orderBy('big').orderBy('id').limit(10));
    await expectSameAsSingle(db.selectFrom('items').select(['id']).orderBy('id').offset(1190));
    await expectSameAsSingle(db.selectFrom('items').select(['id']).orderBy('id').limit(0));
  });

  test('ORDER BY columns that are not selected, qualified or aliased', async () => {
    await expectSameAsSingle(db.selectFrom('items').select('id').orderBy('score').orderBy('items.big', 'desc').orderBy('id').limit(100));
    await expectSameAsSingle(db.selectFrom('items').select(['id as key', 'region as r']).orderBy('r', 'desc').orderBy('key').limit(50).offset(5));
  });

  test('ties: the ordered values match even where rows tie', async () => {
    const node = db.selectFrom('items').select(['score']).orderBy('score').limit(300).toOperationNode();
    expect(await runScatter(node)).toEqual(await runSingle(node));
  });
});

const aggregates = (q: Query) =>
  q.select((eb) => [
    eb.fn.countAll().as('n'),
    eb.fn.count('score').as('n_score'),
    eb.fn.sum('score').as('sum_score'),
    eb.fn.sum('big').as('sum_big'),
    eb.fn.sum('amount').as('sum_amount'),
    eb.fn.sum('price').as('sum_price'),
    eb.fn.min('score').as('min_score'),
    eb.fn.max('big').as('max_big'),
    eb.fn.min('amount').as('min_amount'),
    eb.fn.max('region').as('max_region'),
    eb.fn.min('region').as('min_region'),
    eb.fn.avg('score').as('avg_score'),
    eb.fn.avg('big').as('avg_big'),
    eb.fn.avg('amount').as('avg_amount'),
    eb.fn.avg('price').as('avg_price'),
  ]);

describe('aggregates', () => {
  test('without GROUP BY', async () => {
    const [row] = await expectSameAsSingle(aggregates(db.selectFrom('items') as Query));
    expect(typeof row?.n).toBe('string');
  });

  test('over no rows and over only nulls', async () => {
    await expectSameAsSingle(aggregates(db.selectFrom('items').where('id', '<', 0) as Query));
    await expectSameAsSingle(aggregates(db.selectFrom('items').where('score', 'is', null) as Query));
  });

  test('with GROUP BY, ordered by group and by aggregate, with limit/offset', async () => {
    await expectSameAsSingle(aggregates(db.selectFrom('items').select('grp').groupBy('grp').orderBy('grp') as Query));
    await expectSameAsSingle(
      db.selectFrom('items').select((eb) => ['grp', 'flag', eb.fn.countAll().as('n'), eb.fn.avg('amount').as('a')])
        .groupBy(['grp', 'flag']).orderBy('n', 'desc').orderBy('grp').orderBy('flag').limit(4).offset(1),
    );
    await expectSameAsSingle(
      db.selectFrom('items').select((eb) => ['region', eb.fn.max('price').as('top'), eb.fn.sum('big').as('total')])
        .groupBy('region').orderBy('top', 'desc').orderBy('region'),
    );
  });

  test('GROUP BY with no rows returns no groups', async () => {
    expect(await expectSameAsSingle(aggregates(db.selectFrom('items').select('grp').where('id', '<', 0).groupBy('grp') as Query))).toEqual([]);
  });
});

describe('DISTINCT', () => {
  test('ordered, with and without limit', async () => {
    await expectSameAsSingle(db.selectFrom('items').select('grp').distinct().orderBy('grp'));
    await expectSameAsSingle(db.selectFrom('items').select(['grp', 'flag']).distinct().orderBy('grp', 'desc').orderBy('flag').limit(5).offset(2));
    await expectSameAsSingle(db.selectFrom('items').select(['region']).distinct().orderBy('region'));
  });
});

describe('mergeStreams over pg-cursor streams', () => {
  async function* cursorRows(pool: Pool, sql: string, parameters: unknown[], closed: string[], name: string): AsyncGenerator<Record<string, unknown>> {
    const client = await pool.connect();
    const cursor = client.query(new Cursor(sql, parameters));
    try {
      for (;;) {
        const batch = await cursor.read(50);
        if (batch.length === 0) return;
        yield* batch;
      }
    } finally {
      closed.push(name);
      await cursor.close();
      client.release();
    }
  }

  test('an ordered limit equals the single database and closes every cursor early', async () => {
    const node = db.selectFrom('items').select(['id', 'region', 'big']).orderBy('big', 'desc').orderBy('id').limit(30).offset(10).toOperationNode();
    const plan = planScatter(node);
    expect(plan.streamable).toBe(true);
    const compiled = compiler.compileQuery(plan.shardNode, createQueryId());
    const closed: string[] = [];
    const streams = shards.map((pool, i) => cursorRows(pool, compiled.sql, [...compiled.parameters], closed, `shard${i}`));
    const rows: Record<string, unknown>[] = [];
    const described = await Promise.all(shards.map((pool) => pool.query(compiled.sql, [...compiled.parameters])));
    for await (const row of plan.mergeStreams(streams, builtInTypes(plan, described))) rows.push(row);
    expect(rows).toEqual(await runSingle(node));
    expect(closed.sort()).toEqual(['shard0', 'shard1', 'shard2']);
  });

  test('without a limit the full stream equals the single database', async () => {
    const node = db.selectFrom('items').selectAll().orderBy('region', 'desc').orderBy('id').toOperationNode();
    const plan = planScatter(node);
    const compiled = compiler.compileQuery(plan.shardNode, createQueryId());
    const closed: string[] = [];
    const rows: Record<string, unknown>[] = [];
    const types = builtInTypes(plan, await Promise.all(shards.map((pool) => pool.query(compiled.sql, [...compiled.parameters]))));
    for await (const row of plan.mergeStreams(shards.map((pool, i) => cursorRows(pool, compiled.sql, [...compiled.parameters], closed, `s${i}`)), types)) rows.push(row);
    expect(rows).toEqual(await runSingle(node));
  });
});
