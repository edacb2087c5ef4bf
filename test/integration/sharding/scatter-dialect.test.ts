/**
 * Scatter through the ShardedDialect end to end: `orders` has keylessPolicy { read: 'scatter', write: 'scatter' } on three real
 * shards; the same rows sit in one plain database ("single", Kysely's PostgresDialect). Every
 * supported merge must return exactly what the single database returns; what cannot be merged
 * fails with E_UNSUPPORTED_SCATTER before any shard runs it.
 */
import { Kysely, sql } from 'kysely';
import Cursor from 'pg-cursor';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { countingPool, startShardedFixture, startSingleDatabase, type DB, type ShardedFixture } from './sharded-fixture';
import { ErrorCodes } from '../../../src/kernel/errors';
import { RoutingError } from '../../../src/sharding/sharding-errors';

const SHARDS = 3;
const ROWS = 1200;
const USERS = 150;

type OrderRow = { id: number; user_id: number; amount: string; status: string | null; created_at: Date };

/** Deterministic pseudo-random numbers (LCG), so a failure reproduces. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

function makeOrders(): OrderRow[] {
  const next = random(20240607);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(next() * values.length)] as T;
  // Few distinct amounts and timestamps, so ORDER BY and min/max see many ties.
  const amounts = ['0.00', '1.50', '-2.25', '10.00', '-0.01', '99.99', '1234.56', '-1234.56', '0.10', '7.00'];
  const statuses = ['new', 'paid', 'shipped', 'Paid', 'éclair', '😀', 'cancelled', null, null];
  const times = Array.from({ length: 12 }, (_, i) => new Date(Date.UTC(2024, i % 12, 1 + i, 12, 0, 0)));
  return Array.from({ length: ROWS }, (_, i) => ({
    id: i + 1,
    user_id: 1 + Math.floor(next() * USERS),
    amount: next() < 0.5 ? pick(amounts) : (Math.floor(next() * 2_000_000) / 100 - 10_000).toFixed(2),
    status: pick(statuses),
    created_at: pick(times),
  }));
}

let f: ShardedFixture;
let single: Kysely<DB>;
const orders = makeOrders();

beforeAll(async () => {
  f = await startShardedFixture('scatter_dialect', { keylessPolicy: { orders: { read: 'scatter', write: 'scatter' } } }, SHARDS);
  single = await startSingleDatabase(f.cluster, 'scatter_dialect_single');
  for (let start = 0; start < ROWS; start += 400) {
    const chunk = orders.slice(start, start + 400);
    const [viaDialect] = await Promise.all([f.db.insertInto('orders').values(chunk).executeTakeFirst(), single.insertInto('orders').values(chunk).execute()]);
    expect(viaDialect.numInsertedOrUpdatedRows).toBe(BigInt(chunk.length));
  }
}, 60_000);

afterAll(async () => {
  await single?.destroy();
  await f?.close();
});

/** Runs the same query on the dialect and on the single database; they must deep-equal. */
async function same<R>(build: (db: Kysely<DB>) => { execute(): Promise<R[]> }): Promise<R[]> {
  f.log.reset();
  const [actual, expected] = await Promise.all([build(f.db).execute(), build(single).execute()]);
  expect(actual).toEqual(expected);
  return expected;
}

/** How many shards received a statement since the last reset. */
const shardsHit = (): number => f.shards.filter((s) => f.log.on(s.primaryUrl).length > 0).length;

test('rows are spread over every shard, each on the shard that owns its user_id', async () => {
  let total = 0;
  for (const [index, pool] of f.direct.entries()) {
    const { rows } = await pool.query<{ user_id: string }>('select user_id from orders');
    expect(rows.length).toBeGreaterThan(ROWS / SHARDS / 2);
    for (const row of rows) expect(f.topology.shardForKey(Number(row.user_id)).index).toBe(index);
    total += rows.length;
  }
  expect(total).toBe(ROWS);
});

describe('ORDER BY', () => {
  test('every row, several columns, asc/desc, default null placement', async () => {
    const rows = await same((db) => db.selectFrom('orders').selectAll().orderBy('amount', 'desc').orderBy('status').orderBy('id'));
    expect(rows).toHaveLength(ROWS);
    expect(shardsHit()).toBe(SHARDS);
  });

  test('nulls first and last in both directions', async () => {
    await same((db) => db.selectFrom('orders').selectAll().orderBy('status', (o) => o.asc().nullsFirst()).orderBy('created_at', 'desc').orderBy('id'));
    await same((db) => db.selectFrom('orders').selectAll().orderBy('status', (o) => o.asc().nullsLast()).orderBy('amount').orderBy('id', 'desc'));
    await same((db) => db.selectFrom('orders').selectAll().orderBy('status', (o) => o.desc().nullsFirst()).orderBy('user_id').orderBy('id'));
    await same((db) => db.selectFrom('orders').selectAll().orderBy('status', (o) => o.desc().nullsLast()).orderBy('amount', 'desc').orderBy('id'));
  });

  test('ties: the ordered column alone matches even where rows tie', async () => {
    await same((db) => db.selectFrom('orders').select(['amount']).orderBy('amount'));
    await same((db) => db.selectFrom('orders').select(['created_at', 'status']).orderBy('created_at').orderBy('status', 'desc'));
  });

  test('with a non-key filter, and on columns not selected', async () => {
    await same((db) => db.selectFrom('orders').select(['id', 'amount']).where('amount', '<', '0').orderBy('amount').orderBy('id'));
    await same((db) => db.selectFrom('orders').select('id').where('status', 'is', null).orderBy('created_at', 'desc').orderBy('user_id').orderBy('id'));
  });
});

describe('LIMIT and OFFSET', () => {
  test('limit, offset and both, over tied and null values', async () => {
    await same((db) => db.selectFrom('orders').selectAll().orderBy('amount', 'desc').orderBy('id').limit(25));
    await same((db) => db.selectFrom('orders').selectAll().orderBy('status', (o) => o.asc().nullsFirst()).orderBy('id').limit(40).offset(150));
    await same((db) => db.selectFrom('orders').select(['id', 'user_id']).orderBy('user_id', 'desc').orderBy('id').offset(1190));
    await same((db) => db.selectFrom('orders').select('id').orderBy('id').offset(ROWS + 5));
    expect(await same((db) => db.selectFrom('orders').select('id').orderBy('id').limit(0))).toEqual([]);
  });
});

describe('aggregates', () => {
  const all = (db: Kysely<DB>) =>
    db.selectFrom('orders').select((eb) => [
      eb.fn.countAll().as('n'),
      eb.fn.count('status').as('n_status'),
      eb.fn.sum('amount').as('total'),
      eb.fn.min('amount').as('lowest'),
      eb.fn.max('amount').as('highest'),
      eb.fn.avg('amount').as('mean'),
      eb.fn.avg('user_id').as('mean_user'),
      eb.fn.sum('user_id').as('sum_user'),
      eb.fn.min('status').as('first_status'),
      eb.fn.max('status').as('last_status'),
      eb.fn.min('created_at').as('earliest'),
      eb.fn.max('created_at').as('latest'),
    ]);

  test('count/sum/min/max/avg without GROUP BY', async () => {
    const [row] = await same(all);
    expect(row!.n).toBe(String(ROWS));
    expect(shardsHit()).toBe(SHARDS);
  });

  test('over a filter that matches no rows, and over only negative amounts', async () => {
    await same((db) => all(db).where('id', '<', 0));
    await same((db) => all(db).where('amount', '<', '0'));
  });

  test('with GROUP BY one column, ordered with nulls first', async () => {
    const rows = await same((db) =>
      db
        .selectFrom('orders')
        .select((eb) => ['status', eb.fn.countAll().as('n'), eb.fn.sum('amount').as('total'), eb.fn.min('amount').as('lo'), eb.fn.max('amount').as('hi'), eb.fn.avg('amount').as('mean')])
        .groupBy('status')
        .orderBy('status', (o) => o.asc().nullsFirst()),
    );
    expect(rows[0]!.status).toBeNull();
  });

  test('with GROUP BY several columns, ordered by an aggregate, with limit/offset', async () => {
    await same((db) =>
      db
        .selectFrom('orders')
        .select((eb) => ['user_id', eb.fn.sum('amount').as('total'), eb.fn.countAll().as('n')])
        .groupBy('user_id')
        .orderBy('total', 'desc')
        .orderBy('user_id')
        .limit(10)
        .offset(5),
    );
    await same((db) =>
      db
        .selectFrom('orders')
        .select((eb) => ['status', 'created_at', eb.fn.avg('amount').as('mean'), eb.fn.max('user_id').as('top_user')])
        .groupBy(['status', 'created_at'])
        .orderBy('status', (o) => o.desc().nullsLast())
        .orderBy('created_at'),
    );
  });

  test('GROUP BY over no rows returns no groups', async () => {
    expect(await same((db) => db.selectFrom('orders').select((eb) => ['status', eb.fn.countAll().as('n')]).where('id', '<', 0).groupBy('status'))).toEqual([]);
  });
});

describe('DISTINCT', () => {
  test('one and several columns, ordered, with limit/offset', async () => {
    await same((db) => db.selectFrom('orders').select('status').distinct().orderBy('status'));
    await same((db) => db.selectFrom('orders').select(['status', 'created_at']).distinct().orderBy('status', (o) => o.desc().nullsLast()).orderBy('created_at').limit(20).offset(3));
    await same((db) => db.selectFrom('orders').select('amount').distinct().orderBy('amount', 'desc').limit(50));
  });
});

describe('an in-list spanning shards', () => {
  const keys = Array.from({ length: 30 }, (_, i) => 1 + i * 5);

  test('the keys really span every shard', () => {
    expect(new Set(keys.map((k) => f.topology.shardForKey(k).index)).size).toBe(SHARDS);
  });

  test('ORDER BY + LIMIT/OFFSET merges across the shards it touched', async () => {
    await same((db) => db.selectFrom('orders').selectAll().where('user_id', 'in', keys).orderBy('amount', 'desc').orderBy('id').limit(15));
    expect(shardsHit()).toBe(SHARDS);
    await same((db) => db.selectFrom('orders').selectAll().where('user_id', 'in', keys).orderBy('status', (o) => o.asc().nullsFirst()).orderBy('id', 'desc').limit(20).offset(7));
  });

  test('aggregates and GROUP BY over the in-list', async () => {
    await same((db) => db.selectFrom('orders').select((eb) => [eb.fn.countAll().as('n'), eb.fn.sum('amount').as('total'), eb.fn.avg('amount').as('mean')]).where('user_id', 'in', keys));
    await same((db) =>
      db.selectFrom('orders').select((eb) => ['user_id', eb.fn.countAll().as('n'), eb.fn.max('amount').as('hi')]).where('user_id', 'in', keys).groupBy('user_id').orderBy('n', 'desc').orderBy('user_id').limit(8),
    );
  });

  test('each shard receives only its own keys', async () => {
    f.log.reset();
    await f.db.selectFrom('orders').select('id').where('user_id', 'in', keys).orderBy('id').limit(3).execute();
    for (const [index, shard] of f.shards.entries()) {
      const statements = f.log.on(shard.primaryUrl);
      expect(statements).toHaveLength(1);
      const numeric = statements[0]!.values.filter((v) => typeof v === 'number' && keys.includes(v)) as number[];
      expect(numeric.length).toBeGreaterThan(0);
      for (const key of numeric) expect(f.topology.shardForKey(key).index).toBe(index);
    }
  });
});

describe('stream()', () => {
  async function collect<R>(rows: AsyncIterable<R>): Promise<R[]> {
    const out: R[] = [];
    for await (const row of rows) out.push(row);
    return out;
  }

  test('an ordered scatter with limit/offset streams the single database’s rows', async () => {
    const query = (db: Kysely<DB>) => db.selectFrom('orders').selectAll().orderBy('amount', 'desc').orderBy('status', (o) => o.asc().nullsFirst()).orderBy('id').limit(60).offset(15);
    const streamed = await collect(query(f.db).stream(7));
    expect(streamed).toEqual(await query(single).execute());
    expect(streamed).toHaveLength(60);
  });

  test('an ordered scatter without limit streams every row in order', async () => {
    const query = (db: Kysely<DB>) => db.selectFrom('orders').select(['id', 'status', 'created_at']).orderBy('created_at', 'desc').orderBy('id');
    expect(await collect(query(f.db).stream(50))).toEqual(await query(single).execute());
  });

  test('a shard that runs dry is read for no more rows than the LIMIT can still use', async () => {
    const reads: number[] = [];
    class RecordingCursor extends Cursor {
      override read(maxRows: number, callback?: Cursor.ResultCallback<unknown>): never {
        reads.push(maxRows);
        return (callback === undefined ? super.read(maxRows) : super.read(maxRows, callback)) as never;
      }
    }
    const dialect = new ShardedDialect({ topology: f.topology, shardKeys: { users: 'id', orders: 'user_id' }, keylessPolicy: { orders: { read: 'scatter', write: 'scatter' } }, cursor: RecordingCursor });
    const db = new Kysely<DB>({ dialect });
    try {
      const query = (on: Kysely<DB>) => on.selectFrom('orders').select(['id', 'amount']).orderBy('id').limit(30);
      expect(await collect(query(db).stream(10))).toEqual(await query(single).execute());
      // A chunk of 10 from each shard first; the refills (these rows need some) ask only for what is left of the 30.
      expect(reads.slice(0, SHARDS)).toEqual([10, 10, 10]);
      const refills = reads.slice(SHARDS);
      expect(refills.length).toBeGreaterThan(0);
      for (const size of refills) expect(size).toBeLessThan(10);
    } finally {
      await db.destroy();
    }
  });

  test('an aggregate scatter cannot stream and says so', async () => {
    const error = await collect(f.db.selectFrom('orders').select((eb) => eb.fn.countAll().as('n')).stream()).catch((e) => e);
    expect(error).toBeInstanceOf(RoutingError);
    expect(error.code).toBe(ErrorCodes.UNSUPPORTED_SCATTER);
  });
});

describe('unsupported scatters fail clearly and never return rows', () => {
  async function refused(run: () => Promise<unknown>, code: string = ErrorCodes.UNSUPPORTED_SCATTER): Promise<void> {
    f.log.reset();
    const outcome = await run().then(
      (rows) => ({ rows }),
      (error: unknown) => ({ error }),
    );
    expect(outcome).not.toHaveProperty('rows');
    const { error } = outcome as { error: RoutingError };
    expect(error).toBeInstanceOf(RoutingError);
    expect(error.code).toBe(code);
    expect(shardsHit()).toBe(0); // refused before any shard ran it
  }

  test('HAVING', async () => {
    const query = (db: Kysely<DB>) => db.selectFrom('orders').select((eb) => ['status', eb.fn.countAll().as('n')]).groupBy('status').having((eb) => eb.fn.countAll(), '>', 100);
    expect((await query(single).execute()).length).toBeGreaterThan(0); // the single database has rows to return
    await refused(() => query(f.db).execute());
  });

  test('a window function', async () => {
    await refused(() => f.db.selectFrom('orders').select((eb) => ['id', eb.fn.countAll().over((o) => o.partitionBy('status')).as('n')]).execute());
  });

  test('count(distinct …) and a window function in stream()', async () => {
    await refused(() => f.db.selectFrom('orders').select((eb) => eb.fn.count('status').distinct().as('n')).execute());
    await refused(async () => {
      for await (const row of f.db.selectFrom('orders').select((eb) => ['id', eb.fn.countAll().over().as('n')]).stream()) return [row];
      return [];
    });
  });

  // The router refuses a keyless sharded table inside a CTE before the scatter planner sees it:
  // keyless scatter applies only to a sharded table in the outermost query.
  test('a CTE over a scatter table (refused by the router: no shard key)', async () => {
    await refused(() => f.db.with('o', (db) => db.selectFrom('orders').select('id')).selectFrom('o').select('id').execute(), ErrorCodes.NO_SHARD_KEY);
  });
});

describe('keys that are not keys', () => {
  test('null and object keys are refused with E_INVALID_SHARD_KEY before any shard runs, never scattered', async () => {
    f.log.reset();
    for (const run of [
      () => f.db.selectFrom('orders').selectAll().where('user_id', '=', null as never).execute(),
      () => f.db.selectFrom('orders').selectAll().where('user_id', 'in', [1, null as never]).execute(),
      () => f.db.deleteFrom('orders').where('user_id', '=', { id: 1 } as never).execute(),
      () => f.db.insertInto('orders').values({ user_id: null as never, amount: '1.00' }).execute(),
    ]) {
      await expect(run()).rejects.toMatchObject({ code: 'E_INVALID_SHARD_KEY' });
    }
    expect(shardsHit()).toBe(0);
  });

  test('a 1 MB key is refused at once', async () => {
    f.log.reset();
    const key = '1'.repeat(1_000_000);
    // Reading it as an integer (BigInt, 0.4-0.5 s for 1 MB of digits) is what the bound spares; watched, not timed.
    const parse = jest.spyOn(globalThis, 'BigInt');
    try {
      await expect(f.db.selectFrom('orders').selectAll().where('user_id', '=', key as never).execute()).rejects.toMatchObject({ code: 'E_INVALID_SHARD_KEY', context: { maxBytes: 1024 } });
      expect(parse.mock.calls.filter(([value]) => typeof value === 'string' && value.length > 1024)).toEqual([]);
    } finally {
      parse.mockRestore();
    }
    expect(shardsHit()).toBe(0);
  });
});

describe('keyless writes scatter and sum affected rows', () => {
  test('only with their own opt-in: under the read-only scatter policy a keyless write reaches no shard', async () => {
    const readOnly = new Kysely<DB>({ dialect: new ShardedDialect({ topology: f.topology, shardKeys: { users: 'id', orders: 'user_id' }, keylessPolicy: { orders: 'scatter' }, createPool: (server) => countingPool(server.url, f.log) }) });
    try {
      f.log.reset();
      expect(await readOnly.selectFrom('orders').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).toEqual(await single.selectFrom('orders').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow());
      f.log.reset();
      await expect(readOnly.updateTable('orders').set({ status: 'x' }).execute()).rejects.toMatchObject({ code: 'E_NO_SHARD_KEY', context: { table: 'orders', statement: 'update' } });
      await expect(readOnly.deleteFrom('orders').where('status', '=', 'x').execute()).rejects.toMatchObject({ code: 'E_NO_SHARD_KEY', context: { table: 'orders', statement: 'delete' } });
      expect(shardsHit()).toBe(0);
    } finally {
      await readOnly.destroy();
    }
  });

  test('update', async () => {
    const run = (db: Kysely<DB>) => db.updateTable('orders').set({ status: 'refund' }).where('amount', '<', '-1000').executeTakeFirst();
    f.log.reset();
    const [viaDialect, viaSingle] = await Promise.all([run(f.db), run(single)]);
    expect(viaSingle.numUpdatedRows).toBeGreaterThan(0n);
    expect(viaDialect.numUpdatedRows).toBe(viaSingle.numUpdatedRows);
    expect(shardsHit()).toBe(SHARDS);
    await same((db) => db.selectFrom('orders').selectAll().orderBy('id'));
  });

  test('update with returning', async () => {
    const run = (db: Kysely<DB>) => db.updateTable('orders').set({ amount: sql<string>`amount + 1` }).where('status', '=', 'shipped').returning(['id', 'amount']).execute();
    const [viaDialect, viaSingle] = await Promise.all([run(f.db), run(single)]);
    const byId = (a: { id: number }, b: { id: number }) => a.id - b.id;
    expect(viaSingle.length).toBeGreaterThan(0);
    expect([...viaDialect].sort(byId)).toEqual([...viaSingle].sort(byId));
  });

  test('delete', async () => {
    const run = (db: Kysely<DB>) => db.deleteFrom('orders').where('status', 'is', null).where('amount', '>', '0').executeTakeFirst();
    const [viaDialect, viaSingle] = await Promise.all([run(f.db), run(single)]);
    expect(viaSingle.numDeletedRows).toBeGreaterThan(0n);
    expect(viaDialect.numDeletedRows).toBe(viaSingle.numDeletedRows);
    await same((db) => db.selectFrom('orders').selectAll().orderBy('id'));
    await same((db) => db.selectFrom('orders').select((eb) => [eb.fn.countAll().as('n'), eb.fn.sum('amount').as('total')]));
  });
});
