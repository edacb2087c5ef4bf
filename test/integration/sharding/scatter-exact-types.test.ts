/**
 * Scatter merges are exact for every type they accept, whatever the pg type parsers hand to the
 * app: a differential test against one reference database holding all rows. The pools parse with
 * lossy parsers (timestamps to a millisecond Date, int8 and numeric to JS numbers, intervals to
 * milliseconds), and the values of each column differ only below that precision, so a merge that
 * compared the parsed values would pick, order, group or de-duplicate the wrong rows.
 * Types the merge cannot order exactly (jsonb; an enum whose labels it was not given: the dialect
 * reads them from pg_enum, see scatter-enums) are refused with E_UNSUPPORTED_SCATTER.
 */
import { createQueryId, Kysely, PostgresQueryCompiler, sql, type SelectQueryBuilder, type SelectQueryNode } from 'kysely';
import { Pool, types as pgTypes } from 'pg';
import { planScatter } from '../../../src/sharding/scatter/scatter-plan';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { offlineKysely } from '../../support/offline-kysely';
import { directPool } from '../../support/direct-pool';
import { mergeResults } from '../../support/scatter-types';

const SHARDS = 3;
const ROWS = 96;

// Parsers that lose what the merge must not: microseconds, int8 digits beyond 2^53, numeric scale and digits.
const lossy = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 || oid === 1700) return (text: string) => Number(text);
    if (oid === 1186) return (text: string) => `interval rounded to ${Math.round(intervalMillis(text))} ms`;
    return pgTypes.getTypeParser(oid, format as 'text');
  },
};

/** An interval's length in (rounded) milliseconds, months as 30 days: as lossy as the other parsers. */
function intervalMillis(text: string): number {
  let millis = 0;
  for (const m of text.matchAll(/([+-]?\d+) (year|mon|day)s?/g)) millis += Number(m[1]) * { year: 360, mon: 30, day: 1 }[m[2] as 'day'] * 86_400_000;
  const time = /([+-]?)(\d+):(\d\d):(\d\d(?:\.\d+)?)$/.exec(text);
  if (time !== null) millis += (time[1] === '-' ? -1 : 1) * ((Number(time[2]) * 60 + Number(time[3])) * 60 + Number(time[4])) * 1000;
  return millis;
}

/** Deterministic pseudo-random numbers, so a failure reproduces. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

/** Values per column, as SQL literals; each list holds values equal at the parsers' precision but not in PostgreSQL (and a few equal in PostgreSQL but printed differently). */
const VALUES: Record<string, readonly string[]> = {
  ts: ['2024-01-01 00:00:00.0001', '2024-01-01 00:00:00.0009', '2024-01-01 00:00:00.0002', '2024-01-01 00:00:00.0008', '2024-01-01 00:00:00', '0044-03-15 12:00:00 BC', 'infinity'],
  tstz: ['2024-01-01 00:00:00.0001+00', '2024-01-01 00:00:00.0009+00', '2024-01-01 02:00:00.0005+02', '2024-11-03 01:10:00-08', '2024-11-03 01:30:00-07', '-infinity'],
  d: ['2024-01-01', '0044-03-15 BC', '0001-01-01', 'infinity', '10000-01-01'],
  t: ['10:00:00.000001', '10:00:00', '10:00:00.0009', '24:00:00', '00:00:00'],
  ttz: ['10:00:00+02', '08:00:00+00', '10:00:00.000001+02', '23:00:00-05', '04:00:00+00'],
  iv: ['1 mon', '30 days', '720:00:00', '00:00:00.0001', '00:00:00.0009', '-1 days +23:59:59.9999', '1 year'],
  n: ['1.0', '1.00', '1.000000000000000001', '1.000000000000000002', '-0.0', '0', 'NaN', '123456789012345678901234567890.5'],
  big: ['9007199254740993', '9007199254740992', '9007199254740994', '-9007199254740993', '-9007199254740994', '0'],
  f: ['0.1', '-0', '0', 'NaN', 'Infinity', '-Infinity', '1e+300', '1.0000000000000002'],
  r: ['0.1', '0.100000001', '-0', 'NaN', '3.4e+38'],
  by: ['\\x00ff', '\\x0100', '\\x01', '\\x', '\\xff'],
  u: ['0000000a-0000-0000-0000-000000000000', '00000009-0000-0000-0000-000000000000', 'ffffffff-0000-0000-0000-000000000000'],
  ip: ['10.0.0.1', '10.0.0.0/8', '::1', '::ffff:1.2.3.4', '192.168.0.1/24', '10.0.0.1/31'],
  b: ['true', 'false'],
  bp: ['ab', 'ab  ', 'abc', 'a'],
  tarr: ['{"2024-01-01 00:00:00.0009+00"}', '{"2024-01-01 00:00:00.0001+00"}', '{NULL}', '{}', '{"2024-01-01 00:00:00.0001+00",NULL}'],
  narr: ['{1.0}', '{1.00}', '{1.000000000000000001}', '{{1,2},{3,4}}', '{1,2,3,4}'],
};
const TYPES: Record<string, string> = {
  ts: 'timestamp', tstz: 'timestamptz', d: 'date', t: 'time', ttz: 'timetz', iv: 'interval', n: 'numeric', big: 'bigint',
  f: 'float8', r: 'real', by: 'bytea', u: 'uuid', ip: 'inet', b: 'boolean', bp: 'char(4)', tarr: 'timestamptz[]', narr: 'numeric[]',
};
const COLUMNS = Object.keys(VALUES);

type Row = Record<string, unknown>;
const db = offlineKysely() as unknown as Kysely<{ ev: Record<string, unknown> & { id: number } }>;
const compiler = new PostgresQueryCompiler();

let cluster: TestCluster;
let single: Pool;
let shards: Pool[];

async function load(pool: Pool, ids: readonly number[], literal: (id: number, column: string) => string | null): Promise<void> {
  await pool.query(`create type mood as enum ('sad', 'ok', 'happy')`);
  await pool.query(`create table ev (id int primary key, ${COLUMNS.map((c) => `${c} ${TYPES[c]}`).join(', ')}, e mood, j jsonb)`);
  for (const id of ids) {
    const values = COLUMNS.map((c) => literal(id, c));
    const e = ['happy', 'sad', 'ok'][id % 3];
    await pool.query(`insert into ev values ($1, ${COLUMNS.map((c, i) => `$${i + 2}::${TYPES[c]}`).join(', ')}, '${e}', $${COLUMNS.length + 2})`, [id, ...values, JSON.stringify({ n: id % 4 })]);
  }
}

beforeAll(async () => {
  cluster = await startTestCluster({ shards: SHARDS });
  const shardUrls = await cluster.createDatabase('exact_shards');
  const [singleUrls] = await cluster.createDatabase('exact_single');
  single = directPool({ connectionString: singleUrls!.primaryUrl, max: 2, types: lossy });
  shards = shardUrls.map((urls) => directPool({ connectionString: urls.primaryUrl, max: 2, types: lossy }));
  for (const pool of [single, ...shards]) pool.on('error', () => undefined);
  const next = random(11);
  const table = new Map<string, string | null>();
  for (let id = 1; id <= ROWS; id++) {
    for (const c of COLUMNS) {
      const list = VALUES[c]!;
      table.set(`${id}/${c}`, next() < 0.12 ? null : list[Math.floor(next() * list.length)]!);
    }
  }
  const literal = (id: number, c: string): string | null => table.get(`${id}/${c}`) ?? null;
  const ids = Array.from({ length: ROWS }, (_, i) => i + 1);
  await load(single, ids, literal);
  await Promise.all(shards.map((pool, s) => load(pool, ids.filter((id) => id % SHARDS === s), literal)));
}, 120_000);

afterAll(async () => {
  await Promise.all([single, ...shards].map((pool) => pool?.end()));
  await cluster?.stop();
});

async function onSingle(node: SelectQueryNode): Promise<Row[]> {
  const compiled = compiler.compileQuery(node, createQueryId());
  return (await single.query(compiled.sql, [...compiled.parameters])).rows;
}

async function scattered(node: SelectQueryNode): Promise<Row[]> {
  const plan = planScatter(node);
  const compiled = compiler.compileQuery(plan.shardNode, createQueryId());
  return mergeResults(plan, await Promise.all(shards.map((pool) => pool.query(compiled.sql, [...compiled.parameters]))), (oid) => lossy.getTypeParser(oid, 'text'));
}

/** -0 and 0 are one float8 value to PostgreSQL (which of them a DISTINCT keeps is arbitrary). */
const zero = (rows: Row[]): Row[] => rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Object.is(v, -0) ? 0 : v])));

async function sameAsSingle(query: { toOperationNode(): SelectQueryNode }): Promise<Row[]> {
  const node = query.toOperationNode();
  const expected = zero(await onSingle(node));
  expect(zero(await scattered(node))).toEqual(expected);
  return expected;
}

type Q = SelectQueryBuilder<{ ev: Record<string, unknown> & { id: number } }, 'ev', object>;

describe.each(COLUMNS)('%s', (c) => {
  test('ORDER BY with ties broken by id, both directions, limit and offset', async () => {
    const rows = await sameAsSingle(db.selectFrom('ev').select(['id', c]).orderBy(c).orderBy('id'));
    expect(rows).toHaveLength(ROWS);
    await sameAsSingle(db.selectFrom('ev').select(['id', c]).orderBy(c, (o) => o.desc().nullsLast()).orderBy('id', 'desc').limit(9).offset(3));
    await sameAsSingle(db.selectFrom('ev').select('id').orderBy(c, 'desc').orderBy('id').limit(1));
  });

  test('DISTINCT and GROUP BY split and merge by PostgreSQL equality', async () => {
    const distinct = await sameAsSingle(db.selectFrom('ev').select(c).distinct().orderBy(c));
    const groups = await sameAsSingle(db.selectFrom('ev').select((eb) => [c, eb.fn.countAll().as('cnt')]).groupBy(c).orderBy(c) as unknown as Q);
    expect(groups).toHaveLength(distinct.length);
    await sameAsSingle(db.selectFrom('ev').select((eb) => [c, eb.fn.countAll().as('cnt')]).groupBy(c).orderBy('cnt', 'desc').orderBy(c).limit(3) as unknown as Q);
  });

  test('min and max (where PostgreSQL has them)', async () => {
    const query = db.selectFrom('ev').select((eb) => [eb.fn.min(c).as('lo'), eb.fn.max(c).as('hi')]);
    const defined = await onSingle(query.toOperationNode()).then(() => true, () => false);
    if (defined) await sameAsSingle(query as unknown as Q);
    else await expect(scattered(query.toOperationNode())).rejects.toThrow(); // a shard refuses it as the single database does
  });
});

test('sum and avg of int8 and numeric with parsers that turn them into JS numbers: added from PostgreSQL text, parsed once, as in one database', async () => {
  const finite = (c: 'big' | 'n') => db.selectFrom('ev').where(c, 'is not', null).where(sql<boolean>`${sql.ref(c)}::text <> 'NaN'`);
  for (const c of ['big', 'n'] as const) {
    await sameAsSingle(finite(c).select((eb) => [eb.fn.sum(c).as('total'), eb.fn.avg(c).as('mean'), eb.fn.countAll().as('cnt')]) as unknown as Q);
    await sameAsSingle(finite(c).select((eb) => ['b', eb.fn.sum(c).as('total'), eb.fn.avg(c).as('mean')]).groupBy('b').orderBy('total').orderBy('b') as unknown as Q);
  }
});

test('the issue’s case: microseconds on different shards order, de-duplicate and group as in one database', async () => {
  const at = (micros: string) => `2024-01-01 00:00:00.${micros}+00`;
  const rows = [[1, at('000900')], [2, at('000100')], [4, at('000200')], [7, at('000800')]] as const; // ids 1, 4, 7 on one shard; 2 on another
  for (const pool of [single, ...shards]) await pool.query('create table issue (id int, at timestamptz)');
  for (const [id, value] of rows) {
    await single.query('insert into issue values ($1, $2)', [id, value]);
    await shards[id % SHARDS]!.query('insert into issue values ($1, $2)', [id, value]);
  }
  const issue = db as unknown as Kysely<{ issue: { id: number; at: Date } }>;
  const first = await sameAsSingle(issue.selectFrom('issue').select(['id', 'at']).orderBy('at').limit(1));
  expect(first.map((r) => r.id)).toEqual([2]);
  expect(await sameAsSingle(issue.selectFrom('issue').select('at').distinct())).toHaveLength(4);
  const groups = await sameAsSingle(issue.selectFrom('issue').select((eb) => ['at', eb.fn.countAll().as('n')]).groupBy('at').orderBy('at'));
  expect(groups.map((g) => g.n)).toEqual([1, 1, 1, 1]);
  expect((await sameAsSingle(issue.selectFrom('issue').select(['id']).orderBy('at').orderBy('id'))).map((r) => r.id)).toEqual([2, 4, 7, 1]);
});

describe('types the merge cannot order or compare exactly (jsonb, enums without their labels) are refused, not merged approximately', () => {
  test.each([
    ['enum ORDER BY', () => db.selectFrom('ev').select(['id', 'e']).orderBy('e').orderBy('id')],
    ['enum DISTINCT', () => db.selectFrom('ev').select('e').distinct()],
    ['jsonb ORDER BY', () => db.selectFrom('ev').select(['id', 'j']).orderBy('j').orderBy('id')],
    ['jsonb GROUP BY', () => db.selectFrom('ev').select((eb) => ['j', eb.fn.countAll().as('n')]).groupBy('j')],
    ['enum GROUP BY', () => db.selectFrom('ev').select((eb) => ['e', eb.fn.countAll().as('n')]).groupBy('e')],
    ['enum max', () => db.selectFrom('ev').select((eb) => eb.fn.max('e').as('hi'))],
  ])('%s', async (_what, build) => {
    const node = (build() as unknown as Q).toOperationNode();
    await onSingle(node); // one database runs it: the refusal is the merge's
    await expect(scattered(node)).rejects.toMatchObject({ code: 'E_UNSUPPORTED_SCATTER', message: expect.stringMatching(/cannot be ordered or compared exactly/) });
  });
});
