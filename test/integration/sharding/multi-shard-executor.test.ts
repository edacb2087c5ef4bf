/** Scatter reads and split writes over several shards: partial-write errors, clients released only once every part settled. */
import { Kysely } from 'kysely';
import { startShardedFixture, type ShardedFixture, type DB } from './sharded-fixture';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { PartialWriteError } from '../../../src/sharding/sharding-errors';
import type { PoolLike } from '../../../src/cluster/server-pools';
import type { WriteEvent } from '../../../src/sharding/dialect/write-event';
import { Pool } from 'pg';
import { eventually } from '../../support/postgres-replication';
import { directPool } from '../../support/direct-pool';

let f: ShardedFixture;
beforeAll(async () => {
  f = await startShardedFixture('failures_test');
}, 60_000);
afterAll(() => f?.close());

function keyOn(index: number, from: number): number {
  for (let k = from; ; k++) if (f.topology.shardForKey(k).index === index) return k;
}

describe('statements over several shards, outside transactions', () => {
  it('a split write that fails on one shard reports which shards committed and which VALUES rows were not written, and emits events for them only', async () => {
    const a = keyOn(0, 8000);
    const b = keyOn(1, 8000);
    const c = keyOn(1, b + 1);
    await f.db.insertInto('users').values({ id: b, name: 'taken', email: 'taken@example.com' }).execute();
    const events: WriteEvent[] = [];
    const off = f.dialect.onWrite((e) => events.push(...e));
    const error = await f.db
      .insertInto('users')
      .values([
        { id: b, name: 'dup', email: 'dup8000@example.com' },
        { id: a, name: 'new', email: 'new@example.com' },
        { id: c, name: 'after', email: 'after8000@example.com' },
      ])
      .execute()
      .catch((e) => e);
    off();
    expect(error).toBeInstanceOf(PartialWriteError);
    // Shard 1's part (rows 0 and 2) failed as a whole on row 0's duplicate; shard 0's row 1 was written.
    expect(error.context).toEqual({ committed: [f.shards[0]!.id], failed: [f.shards[1]!.id], failedRows: [0, 2] });
    expect((error.cause as { code: string }).code).toBe('23505');
    expect((await f.direct[0]!.query('select 1 from users where id = $1', [a])).rowCount).toBe(1);
    expect(events).toEqual([{ kind: 'insert', table: 'users', shardId: f.shards[0]!.id, keys: [a] }]);
  });

  it('a scatter read that fails on one shard releases no client while another shard still runs its part', async () => {
    // Real pools whose clients note releases made while one of their queries runs; shard 1's part fails at once.
    const releasedBusy: string[] = [];
    const pools: Pool[] = [];
    const trackingPool = (url: string, failing: boolean): PoolLike => {
      const pool = directPool({ connectionString: url, max: 2 });
      pools.push(pool);
      return {
        on: (event, listener) => pool.on(event, listener),
        end: () => pool.end(),
        async connect() {
          const client = await pool.connect();
          let running = 0;
          return {
            query: ((text: string, values?: unknown[]) => {
              if (failing && text.includes('"users"')) return Promise.reject(new Error('injected: shard part failed'));
              running++;
              return client.query(text, values).finally(() => running--);
            }) as never,
            release: (destroy?: boolean | Error) => {
              if (running > 0) releasedBusy.push(url);
              client.release(destroy);
            },
          };
        },
      };
    };
    const db = new Kysely<DB>({
      dialect: new ShardedDialect({
        topology: f.topology,
        shardKeys: { users: 'id', orders: 'user_id' },
        keylessPolicy: { users: 'scatter' },
        createPool: (server) => trackingPool(server.url, server.url === f.topology.shards[1]!.primary.url),
      }),
    });
    // Shard 0's part waits on a lock until shard 1's failure has had every chance to surface.
    const locker = await f.direct[0]!.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table users in access exclusive mode');
      const outcome = db.selectFrom('users').selectAll().execute().then(() => undefined, (e: unknown) => e);
      await eventually('the scatter part waiting on the lock', async () =>
        (await f.direct[0]!.query("select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%\"users\"%'")).rowCount === 1,
      );
      await locker.query('rollback');
      expect(((await outcome) as Error).message).toContain('injected');
      expect(releasedBusy).toEqual([]);
    } finally {
      locker.release();
      await db.destroy();
    }
  });

  it('a split write that fails everywhere throws PostgreSQL’s own error', async () => {
    const a = keyOn(0, 9000);
    const b = keyOn(1, 9000);
    await f.db.insertInto('users').values([{ id: a, name: 'x', email: null }, { id: b, name: 'y', email: null }]).execute();
    const error = await f.db.insertInto('users').values([{ id: a, name: 'x', email: null }, { id: b, name: 'y', email: null }]).execute().catch((e) => e);
    expect(error.code).toBe('23505');
  });
});
