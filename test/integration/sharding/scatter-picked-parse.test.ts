/**
 * A scatter that picks rows (ORDER BY … LIMIT over several shards) parses only the rows it
 * returns, with the parsers of the client that read them (a pool's own `types` included); a client
 * that does not pass the raw-values option on hands over parsed rows, which are not parsed twice.
 * Real PostgreSQL: three shards and one database holding all rows, compared value for value.
 */
import { Kysely, PostgresDialect } from 'kysely';
import { Pool, types as pgTypes } from 'pg';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { createTopology } from '../../../src/cluster/topology';
import type { PoolClientLike, PoolLike } from '../../../src/cluster/server-pools';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { createFixtureSchema, type DB } from './sharded-fixture';

const SHARDS = 3;
const TIMESTAMPTZ = 1184;
const INT8 = 20;

/** Parsers that count timestamptz parses and give int8 as bigint (a pool's own, over pg's global ones). */
function countingTypes(): { counts: { timestamptz: number }; getTypeParser(oid: number, format?: 'text' | 'binary'): (text: string) => unknown } {
  const counts = { timestamptz: 0 };
  return {
    counts,
    getTypeParser(oid, format) {
      if (oid === INT8) return (text: string) => BigInt(text);
      const parse = pgTypes.getTypeParser(oid, format as 'text') as (text: string) => unknown;
      return oid === TIMESTAMPTZ ? (text: string) => (counts.timestamptz++, parse(text)) : parse;
    },
  };
}

let cluster: TestCluster;
let urls: string[];
let single: Kysely<DB>;
const singleTypes = countingTypes();
const pools: Pool[] = [];

function pool(url: string, types: ReturnType<typeof countingTypes>): Pool {
  const p = new Pool({ connectionString: url, max: 3, types });
  p.on('error', () => undefined);
  pools.push(p);
  return p;
}

/** A dialect over the shards whose pools parse with `types`; `wrap`: clients that pass only name, text and values on (no `types`). */
function dialectDb(types: ReturnType<typeof countingTypes>, wrap = false): Kysely<DB> {
  const topology = createTopology({ shards: urls.map((url, i) => ({ id: `s${i}`, primary: url })) });
  const createPool = (server: { url: string }): PoolLike => {
    const p = pool(server.url, types);
    if (!wrap) return p as unknown as PoolLike;
    return {
      on: (event, listener) => p.on(event, listener),
      end: () => p.end(),
      async connect() {
        const client = await p.connect();
        return {
          query: ((q: unknown, values?: unknown[]) => {
            if (typeof q === 'object' && q !== null && typeof (q as { text?: unknown }).text === 'string' && !('submit' in q)) {
              const { name, text, values: v } = q as { name?: string; text: string; values?: unknown[] };
              return client.query(name === undefined ? { text, values: v } : { name, text, values: v });
            }
            return (client.query as (...a: unknown[]) => unknown)(q, values);
          }) as PoolClientLike['query'],
          release: (destroy?: boolean | Error) => client.release(destroy),
          getTypeParser: (oid: number, format?: 'text' | 'binary') => client.getTypeParser(oid, format),
        } as PoolClientLike;
      },
    };
  };
  return new Kysely<DB>({ dialect: new ShardedDialect({ topology, shardKeys: { users: 'id', orders: 'user_id' }, keylessPolicy: { orders: 'scatter' }, unshardedTables: ['countries'], createPool }) });
}

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1 });
  urls = [];
  for (let i = 0; i < SHARDS; i++) urls.push((await cluster.createDatabase(`picked_parse_${i}`))[0]!.primaryUrl);
  single = new Kysely<DB>({ dialect: new PostgresDialect({ pool: pool((await cluster.createDatabase('picked_parse_single'))[0]!.primaryUrl, singleTypes) }) });
  await createFixtureSchema(single);
  const loader = dialectDb(countingTypes());
  await createFixtureSchema(loader);
  // 60 orders over 30 users (every shard holds some), microseconds apart.
  const rows = Array.from({ length: 60 }, (_, i) => ({ id: i + 1, user_id: 1 + (i % 30), amount: `${i}.25`, status: i % 4 === 0 ? null : `s${i % 3}`, created_at: `2026-01-01 00:00:00.${String(100 + i * 7).padStart(6, '0')}+00` }));
  await loader.insertInto('orders').values(rows as never).execute();
  await single.insertInto('orders').values(rows as never).execute();
  await loader.destroy();
}, 60_000);

afterAll(async () => {
  await single?.destroy();
  await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  await cluster?.stop();
});

const page = (db: Kysely<DB>, offset: number, limit: number) =>
  db.selectFrom('orders').select(['id', 'user_id', 'amount', 'status', 'created_at']).orderBy('created_at', 'desc').orderBy('id').offset(offset).limit(limit).execute();

test('ORDER BY + LIMIT over three shards parses only the rows it returns, with the pool’s own parsers', async () => {
  const types = countingTypes();
  const db = dialectDb(types);
  try {
    for (const [offset, limit] of [[0, 5], [3, 4], [0, 1], [55, 10]] as const) {
      singleTypes.counts.timestamptz = 0;
      types.counts.timestamptz = 0;
      const [actual, expected] = await Promise.all([page(db, offset, limit), page(single, offset, limit)]);
      expect(actual).toEqual(expected);
      expect(actual.length).toBe(Math.min(limit, 60 - offset));
      // Each shard sent up to offset + limit rows; only the returned ones were parsed.
      expect(types.counts.timestamptz).toBe(actual.length);
      expect(typeof actual[0]!.user_id).toBe('bigint');
      expect(actual[0]!.created_at).toBeInstanceOf(Date);
      expect(Object.keys(actual[0]!)).toEqual(['id', 'user_id', 'amount', 'status', 'created_at']);
    }
  } finally {
    await db.destroy();
  }
});

test('a client that does not pass the raw-values option on returns parsed rows, parsed once', async () => {
  const types = countingTypes();
  const db = dialectDb(types, true);
  try {
    const [actual, expected] = await Promise.all([page(db, 2, 6), page(single, 2, 6)]);
    expect(actual).toEqual(expected);
    expect(typeof actual[0]!.user_id).toBe('bigint');
    // The shards' rows were all parsed by the client (8 per shard at most), none twice.
    expect(types.counts.timestamptz).toBeGreaterThan(actual.length);
  } finally {
    await db.destroy();
  }
});

test('a scatter without LIMIT and an aggregate scatter still return parsed values', async () => {
  const types = countingTypes();
  const db = dialectDb(types);
  try {
    const all = await db.selectFrom('orders').select(['id', 'user_id', 'created_at']).orderBy('id').execute();
    expect(all).toEqual(await single.selectFrom('orders').select(['id', 'user_id', 'created_at']).orderBy('id').execute());
    const grouped = (d: Kysely<DB>) => d.selectFrom('orders').select((eb) => ['status', eb.fn.max('created_at').as('last')]).groupBy('status').orderBy('status').limit(2).execute();
    expect(await grouped(db)).toEqual(await grouped(single));
  } finally {
    await db.destroy();
  }
});
