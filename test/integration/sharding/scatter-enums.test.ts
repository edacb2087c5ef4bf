/**
 * Enums in scatter merges, through the dialect: their order is their labels' `enumsortorder`, read
 * from `pg_enum`, so ORDER BY, GROUP BY, DISTINCT, min and max over an enum equal one database
 * holding all rows (streamed too), also after `ALTER TYPE … ADD VALUE … BEFORE` put a new label first.
 */
import { Kysely, sql } from 'kysely';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { quietPool, startShardedFixture, startSingleDatabase, type ShardedFixture } from './sharded-fixture';

interface Tickets {
  tickets: { id: number; user_id: number; mood: string | null; moods: string[] | null };
}

let f: ShardedFixture;
let single: Kysely<Tickets>;
let sharded: Kysely<Tickets>;
const SCHEMA = [
  `create type mood as enum ('sad', 'ok', 'happy')`,
  `create table tickets (id int primary key, user_id int not null, mood mood, moods mood[])`,
];

beforeAll(async () => {
  f = await startShardedFixture('scatter_enums', {}, 3);
  single = (await startSingleDatabase(f.cluster, 'scatter_enums_single')) as unknown as Kysely<Tickets>;
  sharded = new Kysely<Tickets>({ dialect: new ShardedDialect({ topology: f.topology, shardKeys: { tickets: 'user_id' }, keylessPolicy: { tickets: 'scatter' } }) });
  const urls = [...f.shards.map((s) => s.primaryUrl)];
  for (const statement of SCHEMA) {
    await sql.raw(statement).execute(single);
    for (const url of urls) {
      const pool = quietPool(url, 1);
      await pool.query(statement);
      await pool.end();
    }
  }
  const moods = ['happy', 'sad', 'ok', null];
  const rows = Array.from({ length: 60 }, (_, i) => ({ id: i + 1, user_id: i + 1, mood: moods[i % 4] ?? null, moods: i % 5 === 0 ? null : [moods[i % 3]!, moods[(i + 1) % 3]!] }));
  await single.insertInto('tickets').values(rows).execute();
  await sharded.insertInto('tickets').values(rows).execute();
}, 120_000);

afterAll(async () => {
  await sharded?.destroy();
  await single?.destroy();
  await f?.close();
});

const queries = (db: Kysely<Tickets>) => ({
  ordered: db.selectFrom('tickets').select(['id', 'mood']).orderBy('mood', 'desc').orderBy('id').limit(25).execute(),
  grouped: db.selectFrom('tickets').select((eb) => ['mood', eb.fn.countAll().as('n')]).groupBy('mood').orderBy('mood').execute(),
  distinct: db.selectFrom('tickets').select('mood').distinct().orderBy('mood', (o) => o.asc().nullsFirst()).execute(),
  extremes: db.selectFrom('tickets').select((eb) => [eb.fn.min('mood').as('lo'), eb.fn.max('mood').as('hi')]).execute(),
  arrays: db.selectFrom('tickets').select(['id', 'moods']).orderBy('moods').orderBy('id').execute(),
  // A stream's merge reads the labels as the shards' first rows arrive (the cursors hold the connection's clients).
  streamed: collect(db.selectFrom('tickets').select(['id', 'mood']).orderBy('mood').orderBy('id').stream(7)),
});

async function collect<T>(rows: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const row of rows) out.push(row);
  return out;
}

async function expectSame(): Promise<Record<string, unknown>> {
  const [a, b] = [queries(single), queries(sharded)];
  const expected: Record<string, unknown> = {};
  for (const name of Object.keys(a) as (keyof typeof a)[]) {
    expected[name] = await a[name];
    expect({ [name]: await b[name] }).toEqual({ [name]: expected[name] });
  }
  return expected;
}

test('ORDER BY, GROUP BY, DISTINCT, min and max over an enum and enum arrays equal one database', async () => {
  const expected = await expectSame();
  // The enum's order, not its text's: sad < ok < happy.
  expect((expected.grouped as { mood: string | null }[]).map((g) => g.mood)).toEqual(['sad', 'ok', 'happy', null]);
});

test('a label added before the others (ALTER TYPE … ADD VALUE … BEFORE) is read again and ordered first', async () => {
  const statement = `alter type mood add value 'awful' before 'sad'`;
  await sql.raw(statement).execute(single);
  for (const shard of f.shards) {
    const pool = quietPool(shard.primaryUrl, 1);
    await pool.query(statement);
    await pool.end();
  }
  for (const db of [single, sharded]) await db.updateTable('tickets').set({ mood: 'awful' }).where('user_id', 'in', [7, 8, 9]).execute();
  // A stream cannot read the labels again once it merges: it fails with a coded error, and the next statement reads them.
  await expect(collect(sharded.selectFrom('tickets').select(['id', 'mood']).orderBy('mood').orderBy('id').stream(7))).rejects.toMatchObject({
    code: 'E_UNSUPPORTED_SCATTER',
    message: expect.stringMatching(/"awful" is not one of its labels/),
  });
  const expected = await expectSame();
  expect((expected.grouped as { mood: string | null }[]).map((g) => g.mood)).toEqual(['awful', 'sad', 'ok', 'happy', null]);
});

test('a stream meeting an enum its dialect has not read: with no second pooled connection it fails with a coded error, never hangs; once read, one connection is enough', async () => {
  const small = new Kysely<Tickets>({
    dialect: new ShardedDialect({ topology: f.topology, shardKeys: { tickets: 'user_id' }, keylessPolicy: { tickets: 'scatter' }, pool: { max: 1, connectionTimeoutMillis: 200 } }),
  });
  const streamed = (db: Kysely<Tickets>) => collect(db.selectFrom('tickets').select(['id', 'mood']).orderBy('mood').orderBy('id').stream(7));
  try {
    await expect(streamed(small)).rejects.toMatchObject({ code: 'E_UNSUPPORTED_SCATTER', message: expect.stringMatching(/second pooled connection.*Raise pool\.max/) });
    // execute() reads the labels on the connection it holds; a stream then needs no other.
    await small.selectFrom('tickets').select(['id', 'mood']).orderBy('mood').limit(1).execute();
    expect(await streamed(small)).toEqual(await streamed(single));
  } finally {
    await small.destroy();
  }
});
