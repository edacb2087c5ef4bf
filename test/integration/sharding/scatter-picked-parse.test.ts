/**
 * A scatter that picks rows (ORDER BY … LIMIT over several shards) parses only the rows it
 * returns, each with the parsers of the client that read it (a pool's own `types` included):
 * `parseReturnedRowsOnly`. Clients that drop the option, read in binary, or return fields without
 * names still give the values one database gives, parsed once. Real PostgreSQL: three shards and
 * one database holding all rows, compared value for value.
 */
import { Kysely, PostgresDialect, sql } from 'kysely';
import { Pool, types as pgTypes } from 'pg';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import type { PoolClientLike, PoolLike } from '../../../src/cluster/server-pools';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { createFixtureSchema, type DB } from './sharded-fixture';

const SHARDS = 3;
const TIMESTAMPTZ = 1184;
const INT8 = 20;
const NUMERIC = 1700;

/**
 * A pool's own parsers over pg's global ones: int8 as bigint, numeric tagged (parsing a value
 * twice would tag it twice), timestamptz counted, and `failOn` (an amount's text) refused.
 */
function poolTypes(failOn?: string): { parsed: number; getTypeParser(oid: number, format?: 'text' | 'binary'): (text: string) => unknown } {
  const types = {
    parsed: 0,
    getTypeParser(oid: number, format?: 'text' | 'binary') {
      if (format === 'binary') return pgTypes.getTypeParser(oid, 'binary') as (text: string) => unknown;
      if (oid === INT8) return (text: string) => BigInt(text);
      if (oid === NUMERIC) {
        return (text: string) => {
          if (text === failOn) throw new Error(`refused amount ${text}`);
          return `n:${text}`;
        };
      }
      const parse = pgTypes.getTypeParser(oid, 'text') as (text: string) => unknown;
      return oid === TIMESTAMPTZ ? (text: string) => (types.parsed++, parse(text)) : parse;
    },
  };
  return types;
}

type Wrap = 'none' | 'drops-types' | 'no-field-names';

let cluster: TestCluster;
let topology: Topology;
let urls: string[];
let singleUrl: string;
const pools: Pool[] = [];

function pool(url: string, types: ReturnType<typeof poolTypes>, binary = false): Pool {
  const p = new Pool({ connectionString: url, max: 3, types, ...(binary ? { binary: true } : {}) });
  p.on('error', () => undefined);
  pools.push(p);
  return p;
}

/** A client passing on only name, text and values (`drops-types`), or returning fields without names. */
function wrapped(p: Pool, wrap: Exclude<Wrap, 'none'>): PoolLike {
  return {
    on: (event, listener) => p.on(event, listener),
    end: () => p.end(),
    async connect() {
      const client = await p.connect();
      return {
        query: (async (q: unknown, values?: unknown[]) => {
          if (typeof q === 'object' && q !== null && typeof (q as { text?: unknown }).text === 'string' && !('submit' in q)) {
            const { name, text, values: v, types } = q as { name?: string; text: string; values?: unknown[]; types?: never };
            const result = await client.query({ ...(name === undefined ? {} : { name }), text, values: v, ...(wrap === 'drops-types' || types === undefined ? {} : { types }) });
            return wrap === 'no-field-names' ? { ...result, fields: result.fields.map((f) => ({ dataTypeID: f.dataTypeID })) } : result;
          }
          return (client.query as (...a: unknown[]) => unknown)(q, values);
        }) as PoolClientLike['query'],
        release: (destroy?: boolean | Error) => client.release(destroy),
        getTypeParser: (oid: number, format?: 'text' | 'binary') => client.getTypeParser(oid, format),
      } as PoolClientLike;
    },
  };
}

/** A dialect over the shards, shard i's pool parsing with `types[i]`. */
function dialectDb(types: ReturnType<typeof poolTypes>[], options: { wrap?: Wrap; binary?: boolean } = {}): Kysely<DB> {
  const createPool = (server: { url: string }): PoolLike => {
    const p = pool(server.url, types[urls.indexOf(server.url)]!, options.binary);
    return options.wrap === undefined || options.wrap === 'none' ? (p as unknown as PoolLike) : wrapped(p, options.wrap);
  };
  return new Kysely<DB>({
    dialect: new ShardedDialect({ topology, shardKeys: { users: 'id', orders: 'user_id' }, keylessPolicy: { orders: 'scatter' }, unshardedTables: ['countries'], createPool, parseReturnedRowsOnly: true }),
  });
}

const shardTypes = (failOn?: string) => urls.map(() => poolTypes(failOn));
const singleDb = (types = poolTypes(), binary = false) => new Kysely<DB>({ dialect: new PostgresDialect({ pool: pool(singleUrl, types, binary) }) });

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1 });
  urls = [];
  for (let i = 0; i < SHARDS; i++) urls.push((await cluster.createDatabase(`picked_parse_${i}`))[0]!.primaryUrl);
  topology = createTopology({ shards: urls.map((url, i) => ({ id: `s${i}`, primary: url })) });
  singleUrl = (await cluster.createDatabase('picked_parse_single'))[0]!.primaryUrl;
  const single = singleDb();
  const loader = dialectDb(shardTypes());
  await createFixtureSchema(single);
  await createFixtureSchema(loader);
  // 60 orders over 30 users (every shard holds some), microseconds apart.
  const rows = Array.from({ length: 60 }, (_, i) => ({ id: i + 1, user_id: 1 + (i % 30), amount: `${i}.25`, status: i % 4 === 0 ? null : `s${i % 3}`, created_at: `2026-01-01 00:00:00.${String(100 + i * 7).padStart(6, '0')}+00` }));
  await loader.insertInto('orders').values(rows as never).execute();
  await single.insertInto('orders').values(rows as never).execute();
  await loader.destroy();
  await single.destroy();
}, 60_000);

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  await cluster?.stop();
});

const page = (db: Kysely<DB>, offset: number, limit: number) =>
  db.selectFrom('orders').select(['id', 'user_id', 'amount', 'status', 'created_at']).orderBy('created_at', 'desc').orderBy('id').offset(offset).limit(limit).execute();

test('ORDER BY + LIMIT over three shards parses only the rows it returns, each with its own shard’s parsers', async () => {
  const types = shardTypes();
  const db = dialectDb(types);
  const single = singleDb();
  try {
    for (const [offset, limit] of [[0, 5], [3, 4], [0, 1], [55, 10]] as const) {
      for (const t of types) t.parsed = 0;
      const [actual, expected] = await Promise.all([page(db, offset, limit), page(single, offset, limit)]);
      expect(actual).toEqual(expected);
      expect(actual.length).toBe(Math.min(limit, 60 - offset));
      // Each shard sent up to offset + limit rows; only the returned ones were parsed, each by the pool of the shard it came from.
      const returnedFrom = urls.map((_, i) => actual.filter((row) => topology.shardForKey(Number(row.user_id)).index === i).length);
      expect(types.map((t) => t.parsed)).toEqual(returnedFrom);
      expect(typeof actual[0]!.user_id).toBe('bigint');
      expect(actual[0]!.amount).toMatch(/^n:\d+\.25$/);
      expect(actual[0]!.created_at).toBeInstanceOf(Date);
      expect(Object.keys(actual[0]!)).toEqual(['id', 'user_id', 'amount', 'status', 'created_at']);
    }
  } finally {
    await db.destroy();
    await single.destroy();
  }
});

test('a name two columns share holds, and is parsed as, the later column', async () => {
  const db = dialectDb(shardTypes());
  const single = singleDb();
  const query = (d: Kysely<DB>) => d.selectFrom('orders').select(['id', sql<string>`amount`.as('x'), sql<string>`status`.as('x')]).orderBy('id').limit(6).execute();
  try {
    const [actual, expected] = await Promise.all([query(db), query(single)]);
    expect(actual).toEqual(expected);
    expect(actual.map((r) => r.x)).toEqual([null, 's1', 's2', 's0', null, 's2']);
  } finally {
    await db.destroy();
    await single.destroy();
  }
});

test.each<[string, { wrap?: Wrap; binary?: boolean }]>([
  ['a client that drops the types option (rows arrive parsed, parsed once)', { wrap: 'drops-types' }],
  ['a client that returns fields without names (text rows parsed by position)', { wrap: 'no-field-names' }],
  ['pools reading in binary (left to their parsers)', { binary: true }],
])('%s returns the values one database returns', async (_, options) => {
  const types = shardTypes();
  const db = dialectDb(types, options);
  const single = singleDb(poolTypes(), options.binary === true);
  try {
    const [actual, expected] = await Promise.all([page(db, 2, 6), page(single, 2, 6)]);
    expect(actual).toEqual(expected);
    expect(actual).toHaveLength(6);
    if (options.binary !== true) expect(actual[0]!.amount).toMatch(/^n:\d+\.25$/);
  } finally {
    await db.destroy();
    await single.destroy();
  }
});

test('a parser fails only on a value returned, and its error names the shard', async () => {
  // 59.25 is the latest order's amount: in the first page, not in the second.
  const failing = dialectDb(shardTypes('59.25'));
  try {
    await expect(page(failing, 1, 5)).resolves.toHaveLength(5);
    const error = await page(failing, 0, 5).then(() => undefined, (e: unknown) => e as Error & { shardId?: string });
    expect(error?.message).toBe('refused amount 59.25');
    expect(error?.shardId).toBe(`s${topology.shardForKey(30).index}`);
  } finally {
    await failing.destroy();
  }
});

test('scatters without LIMIT and aggregate scatters still return parsed values', async () => {
  const db = dialectDb(shardTypes());
  const single = singleDb();
  try {
    const all = (d: Kysely<DB>) => d.selectFrom('orders').select(['id', 'user_id', 'amount', 'created_at']).orderBy('id').execute();
    expect(await all(db)).toEqual(await all(single));
    const grouped = (d: Kysely<DB>) => d.selectFrom('orders').select((eb) => ['status', eb.fn.max('created_at').as('last')]).groupBy('status').orderBy('status').limit(2).execute();
    expect(await grouped(db)).toEqual(await grouped(single));
  } finally {
    await db.destroy();
    await single.destroy();
  }
});
