import { Kysely } from 'kysely';
import { interceptingPool, startShardedFixture, type ShardedFixture, type DB } from './sharded-fixture';
import { ShardedDialect } from '../../../src/sharding/sharded-dialect';
import { ErrorCodes, PartialWriteError, TransactionAbortedError } from '../../../src/errors';
import type { PoolLike } from '../../../src/sharding/server-pools';
import type { WriteEvent } from '../../../src/sharding/write-event';

let f: ShardedFixture;
beforeAll(async () => {
  f = await startShardedFixture('failures_test');
}, 60_000);
afterAll(() => f?.close());

function keyOn(index: number, from: number): number {
  for (let k = from; ; k++) if (f.topology.shardForKey(k).index === index) return k;
}

/** Fails the next `start transaction` while `failBegin.armed` is set. */
function beginFailingPool(url: string, failBegin: { armed: boolean }): PoolLike {
  return interceptingPool(url, (sql) => {
    if (!failBegin.armed || !sql.startsWith('start transaction')) return undefined;
    failBegin.armed = false;
    return new Error('injected: connection reset during BEGIN');
  });
}

describe('failures', () => {
  it('a failed BEGIN ends the transaction: later statements fail and nothing autocommits', async () => {
    const failBegin = { armed: true };
    const db = new Kysely<DB>({
      dialect: new ShardedDialect({ topology: f.topology, shardKeys: { users: 'id', orders: 'user_id' }, createPool: (s) => beginFailingPool(s.url, failBegin) }),
    });
    const user = keyOn(0, 7000);
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

  it('a split write that fails on one shard reports which shards committed, and emits events for them only', async () => {
    const a = keyOn(0, 8000);
    const b = keyOn(1, 8000);
    await f.db.insertInto('users').values({ id: b, name: 'taken', email: 'taken@example.com' }).execute();
    const events: WriteEvent[] = [];
    const off = f.dialect.onWrite((e) => events.push(...e));
    const error = await f.db
      .insertInto('users')
      .values([
        { id: a, name: 'new', email: 'new@example.com' },
        { id: b, name: 'dup', email: 'dup8000@example.com' },
      ])
      .execute()
      .catch((e) => e);
    off();
    expect(error).toBeInstanceOf(PartialWriteError);
    expect(error.context).toEqual({ committed: [f.shards[0]!.id], failed: [f.shards[1]!.id] });
    expect((error.cause as { code: string }).code).toBe('23505');
    expect((await f.direct[0]!.query('select 1 from users where id = $1', [a])).rowCount).toBe(1);
    expect(events).toEqual([{ kind: 'insert', table: 'users', shardId: f.shards[0]!.id, keys: [a] }]);
  });

  it('a split write that fails everywhere throws PostgreSQL’s own error', async () => {
    const a = keyOn(0, 9000);
    const b = keyOn(1, 9000);
    await f.db.insertInto('users').values([{ id: a, name: 'x', email: null }, { id: b, name: 'y', email: null }]).execute();
    const error = await f.db.insertInto('users').values([{ id: a, name: 'x', email: null }, { id: b, name: 'y', email: null }]).execute().catch((e) => e);
    expect(error.code).toBe('23505');
  });
});
