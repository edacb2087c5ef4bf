/**
 * The shard transaction: BEGIN deferred to the first keyed statement and bound to its shard,
 * savepoints before and after binding, cross-shard statements doom it, a failed BEGIN aborts it,
 * and write events wait for COMMIT.
 */
import { Kysely, sql } from 'kysely';
import { interceptingPool, startShardedFixture, type DB, type ShardedFixture } from './sharded-fixture';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ErrorCodes } from '../../../src/kernel/errors';
import { CrossShardTransactionError, TransactionAbortedError } from '../../../src/sharding/sharding-errors';
import type { PoolLike } from '../../../src/cluster/server-pools';
import type { WriteEvent } from '../../../src/sharding/dialect/write-event';

let f: ShardedFixture;
beforeAll(async () => {
  f = await startShardedFixture('transaction_test');
}, 60_000);
afterAll(() => f?.close());

const shardIndexOf = (key: number) => f.topology.shardForKey(key).index;
function keysOnShard(index: number, count: number, from = 1): number[] {
  const keys: number[] = [];
  for (let k = from; keys.length < count; k++) if (shardIndexOf(k) === index) keys.push(k);
  return keys;
}
async function rowsOn(shard: number, query: string, values: unknown[] = []): Promise<any[]> {
  return (await f.direct[shard]!.query(query, values)).rows;
}

/** Fails the next `start transaction` while `failBegin.armed` is set. */
function beginFailingPool(url: string, failBegin: { armed: boolean }): PoolLike {
  return interceptingPool(url, (sql) => {
    // Kysely's BEGIN text: `begin`, or `start transaction …` with settings.
    if (!failBegin.armed || !/^(begin|start transaction)\b/.test(sql)) return undefined;
    failBegin.armed = false;
    return new Error('injected: connection reset during BEGIN');
  });
}

describe('transactions on a sharded connection', () => {
  it('binds to the shard of the first keyed statement and commits there', async () => {
    const [a1, a2] = keysOnShard(0, 2, 2000);
    await f.db.transaction().setIsolationLevel('serializable').execute(async (trx) => {
      await trx.insertInto('orders').values({ user_id: a1!, amount: '1.00' }).execute();
      await trx.insertInto('orders').values({ user_id: a2!, amount: '2.00' }).execute();
      const level = await sql<{ level: string }>`select current_setting('transaction_isolation') as level`.execute(trx);
      expect(level.rows[0]!.level).toBe('serializable');
    });
    expect(await rowsOn(0, 'select user_id from orders where user_id = any($1)', [[a1, a2]])).toHaveLength(2);
  });

  it('rejects a statement for another shard and leaves no row behind', async () => {
    const [a] = keysOnShard(0, 1, 3000);
    const [b] = keysOnShard(1, 1, 3000);
    const error = await f.db
      .transaction()
      .execute(async (trx) => {
        await trx.insertInto('orders').values({ user_id: a!, amount: '1.00' }).execute();
        await trx.insertInto('orders').values({ user_id: b!, amount: '1.00' }).execute();
      })
      .catch((e) => e);
    expect(error).toBeInstanceOf(CrossShardTransactionError);
    expect(error.code).toBe(ErrorCodes.CROSS_SHARD_TRANSACTION);
    expect(await rowsOn(0, 'select 1 from orders where user_id = $1', [a])).toHaveLength(0);
    expect(await rowsOn(1, 'select 1 from orders where user_id = $1', [b])).toHaveLength(0);
  });

  it('refuses to commit a controlled transaction that crossed shards', async () => {
    const [a] = keysOnShard(0, 1, 4000);
    const [b] = keysOnShard(1, 1, 4000);
    const trx = await f.db.startTransaction().execute();
    await trx.insertInto('orders').values({ user_id: a!, amount: '1.00' }).execute();
    await expect(trx.insertInto('orders').values({ user_id: b!, amount: '1.00' }).execute()).rejects.toBeInstanceOf(CrossShardTransactionError);
    await expect(trx.commit().execute()).rejects.toBeInstanceOf(CrossShardTransactionError);
    await trx.rollback().execute(); // releases the connection, as after any failed commit
    expect(await rowsOn(0, 'select 1 from orders where user_id = $1', [a])).toHaveLength(0);
  });

  it('supports savepoints, before and after the transaction is bound', async () => {
    const [a1, a2] = keysOnShard(1, 2, 5000);
    const trx = await f.db.startTransaction().execute();
    const sp0 = await trx.savepoint('before_bind').execute();
    await sp0.insertInto('orders').values({ user_id: a1!, amount: '1.00' }).execute();
    const sp1 = await sp0.savepoint('after_bind').execute();
    await sp1.insertInto('orders').values({ user_id: a2!, amount: '2.00' }).execute();
    const back = await sp1.rollbackToSavepoint('after_bind').execute();
    await back.commit().execute();
    const rows = await rowsOn(1, 'select user_id::int as u from orders where user_id = any($1)', [[a1, a2]]);
    expect(rows.map((r) => r.u)).toEqual([a1]);
  });

  it('emits write events only after commit', async () => {
    const events: WriteEvent[] = [];
    const off = f.dialect.onWrite((e) => events.push(...e));
    const [a] = keysOnShard(0, 1, 6000);
    await f.db.transaction().execute(async (trx) => {
      await trx.insertInto('orders').values({ user_id: a!, amount: '1.00' }).execute();
      expect(events).toHaveLength(0);
    });
    expect(events).toEqual([{ kind: 'insert', table: 'orders', shardId: f.shards[0]!.id, keys: [a] }]);
    await f.db.transaction().execute(async (trx) => trx.deleteFrom('orders').where('user_id', '=', a!).execute()).then(() => undefined);
    expect(events.map((e) => e.kind)).toEqual(['insert', 'delete']);
    off();
  });

  it('a failed BEGIN ends the transaction: later statements fail and nothing autocommits', async () => {
    const failBegin = { armed: true };
    const db = new Kysely<DB>({
      dialect: new ShardedDialect({ topology: f.topology, shardKeys: { users: 'id', orders: 'user_id' }, createPool: (s) => beginFailingPool(s.url, failBegin) }),
    });
    const user = keysOnShard(0, 1, 7000)[0]!;
    try {
      const error = await db
        .transaction()
        .execute(async (trx) => {
          await trx.insertInto('orders').values({ user_id: user, amount: '1.00' }).execute().catch(() => undefined);
          await trx.insertInto('orders').values({ user_id: user, amount: '2.00' }).execute();
        })
        .catch((e) => e);
      expect(error).toBeInstanceOf(TransactionAbortedError);
      expect(error.code).toBe(ErrorCodes.TRANSACTION_ABORTED);
      const rows = await f.direct[0]!.query('select 1 from orders where user_id = $1', [user]);
      expect(rows.rowCount).toBe(0);
    } finally {
      await db.destroy();
    }
  });
});
