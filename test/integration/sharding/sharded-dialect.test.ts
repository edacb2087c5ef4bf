/** ShardedDialect end to end: where rows land and statements run, raw SQL targets, streams, topology changes, destroy. */
import { Kysely, sql } from 'kysely';
import { startShardedFixture, type DB, type ShardedFixture } from './sharded-fixture';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { withShard, withShardKey } from '../../../src/sharding/routing/route-hint';
import { createTopology } from '../../../src/cluster/topology';
import { ErrorCodes } from '../../../src/kernel/errors';
import { DialectDestroyedError, RoutingError } from '../../../src/sharding/sharding-errors';
import { ShardKeyError } from '../../../src/cluster/cluster-errors';

let f: ShardedFixture;
beforeAll(async () => {
  f = await startShardedFixture('dialect_test', { keylessPolicy: { orders: 'scatter' } });
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

describe('ShardedDialect on real PostgreSQL shards', () => {
  it('stores every inserted row only on the shard that owns its key', async () => {
    const users = Array.from({ length: 600 }, (_, i) => ({ id: i + 1, name: `user ${i + 1}`, email: null }));
    const result = await f.db.insertInto('users').values(users).executeTakeFirst();
    expect(result.numInsertedOrUpdatedRows).toBe(600n);
    const seen = new Set<number>();
    for (const [index, shard] of f.shards.entries()) {
      const rows = await rowsOn(index, 'select id::int as id, kysely_scale_slot(id) as slot from users');
      expect(rows.length).toBeGreaterThan(200);
      for (const row of rows) {
        expect(f.topology.shardForKey(row.id).id).toBe(shard.id);
        expect(f.topology.shardForSlot(row.slot).id).toBe(shard.id); // the SQL twin agrees
        expect(seen.has(row.id)).toBe(false);
        seen.add(row.id);
      }
    }
    expect(seen.size).toBe(600);
  });

  it('reads a key from its shard only', async () => {
    f.log.reset();
    const user = await f.db.selectFrom('users').selectAll().where('id', '=', 42).executeTakeFirstOrThrow();
    expect(user.name).toBe('user 42');
    const owner = f.shards[shardIndexOf(42)]!.primaryUrl;
    const other = f.shards[1 - shardIndexOf(42)]!.primaryUrl;
    expect(f.log.on(owner)).toHaveLength(1);
    expect(f.log.on(other)).toHaveLength(0);
  });

  it('runs an in-list once per shard with only that shard’s keys', async () => {
    const keys = [...keysOnShard(0, 3), ...keysOnShard(1, 2)];
    f.log.reset();
    const rows = await f.db.selectFrom('users').select(['id', 'name']).where('id', 'in', keys).orderBy('id').execute();
    expect(rows.map((r) => Number(r.id))).toEqual([...keys].sort((a, b) => a - b));
    for (const [index, shard] of f.shards.entries()) {
      const statements = f.log.on(shard.primaryUrl);
      expect(statements).toHaveLength(1);
      expect(statements[0]!.values.map((v) => shardIndexOf(Number(v)))).toEqual(statements[0]!.values.map(() => index));
    }
  });

  it('splits a multi-shard insert, returns RETURNING rows in VALUES order and sums affected counts', async () => {
    const keys = [keysOnShard(0, 1, 1000)[0]!, keysOnShard(1, 1, 1000)[0]!, keysOnShard(0, 2, 1000)[1]!];
    const rows = await f.db.insertInto('orders').values(keys.map((user_id, i) => ({ user_id, amount: `${i}.50`, status: 'new' }))).returning(['user_id', 'amount']).execute();
    expect(rows.map((r) => Number(r.user_id))).toEqual(keys);
    const updated = await f.db.updateTable('orders').set({ status: 'paid' }).where('user_id', 'in', keys).executeTakeFirst();
    expect(updated.numUpdatedRows).toBe(3n);
    const deleted = await f.db.deleteFrom('orders').where('user_id', 'in', keys).returning('user_id').execute();
    expect(deleted).toHaveLength(3);
  });

  it('passes PostgreSQL errors through unchanged', async () => {
    await f.db.updateTable('users').set({ email: 'dup@example.com' }).where('id', '=', 7).execute();
    const sameShard = keysOnShard(shardIndexOf(7), 2, 8)[0]!;
    const error = await f.db.updateTable('users').set({ email: 'dup@example.com' }).where('id', '=', sameShard).execute().catch((e) => e);
    expect(error.code).toBe('23505');
    expect(error.constraint).toBe('users_email_key');
    expect(error.detail).toContain('dup@example.com');
  });

  it('refuses a keyless query on an error-policy table, naming the table and the fixes', async () => {
    const error = await f.db.selectFrom('users').selectAll().where('name', '=', 'x').execute().catch((e) => e);
    expect(error).toBeInstanceOf(RoutingError);
    expect(error.code).toBe(ErrorCodes.NO_SHARD_KEY);
    expect(error.message).toMatch(/"users".*withShardKey/s);
  });

  it('refuses a bad key value', async () => {
    const error = await f.db.selectFrom('users').selectAll().where('id', '=', 1.5).execute().catch((e) => e);
    expect(error).toBeInstanceOf(ShardKeyError);
  });

  it('targets raw SQL explicitly', async () => {
    const onShard1 = await sql<{ n: string }>`select count(*) as n from users`.execute(f.db.withPlugin(withShard(f.shards[1]!.id)));
    const direct = await rowsOn(1, 'select count(*) as n from users');
    expect(onShard1.rows[0]!.n).toBe(direct[0].n);
    const byKey = await sql<{ name: string }>`select name from users where id = ${42}`.execute(f.db.withPlugin(withShardKey(42)));
    expect(byKey.rows[0]!.name).toBe('user 42');
  });

  it('streams rows of one shard', async () => {
    const ids: number[] = [];
    for await (const row of f.db.selectFrom('users').select('id').where('id', 'in', keysOnShard(1, 50)).orderBy('id').stream(7)) ids.push(Number(row.id));
    expect(ids).toEqual(keysOnShard(1, 50));
  });

  it('accepts a new topology while queries are in flight', async () => {
    const inFlight = Array.from({ length: 40 }, (_, i) => f.db.selectFrom('users').select('name').where('id', '=', i + 1).executeTakeFirstOrThrow());
    const next = f.topology.withSlotsMoved([], f.shards[0]!.id, 2);
    f.dialect.setTopology(next);
    const rows = await Promise.all(inFlight);
    expect(rows.map((r) => r.name)).toEqual(Array.from({ length: 40 }, (_, i) => `user ${i + 1}`));
    expect(f.dialect.topology.version).toBe(2);
    expect(() => f.dialect.setTopology(f.topology)).toThrow(/not newer/);
  });

  it('ends the pool of a server the new topology drops only after its in-flight query finishes', async () => {
    const current = f.dialect.topology;
    // Same server under another URL: a new pool, and the old one is retired.
    const moved = createTopology({
      shards: f.shards.map((s, i) => ({ id: s.id, primary: i === 1 ? `${s.primaryUrl}?application_name=after-move` : s.primaryUrl })),
      owners: current.ownerIds(),
      version: current.version + 1,
    });
    const onShard1 = f.db.withPlugin(withShard(f.shards[1]!.id));
    await sql`select 1`.execute(onShard1); // leaves an idle client, so the next checkout needs no I/O
    const slow = sql<{ x: number }>`select pg_sleep(0.3), 1 as x`.execute(onShard1);
    await new Promise<void>((resolve) => setImmediate(resolve)); // microtasks done: the statement holds its client
    f.dialect.setTopology(moved);
    expect((await slow).rows[0]!.x).toBe(1);
    const name = await sql<{ app: string }>`select current_setting('application_name') as app`.execute(onShard1);
    expect(name.rows[0]!.app).toBe('after-move');
  });

  it('refuses work after it was destroyed, with E_DESTROYED', async () => {
    const dialect = new ShardedDialect({ topology: f.topology, shardKeys: { users: 'id' } });
    const db = new Kysely<DB>({ dialect });
    expect((await db.selectFrom('users').select('name').where('id', '=', 1).executeTakeFirstOrThrow()).name).toBe('user 1');
    await db.destroy();
    const error = await dialect.installSlotFunctions().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DialectDestroyedError);
    expect(error).toMatchObject({ code: ErrorCodes.DESTROYED });
  });

  it('E_DESTROYED gives advice that works: a new Kysely on the same dialect still fails, a new ShardedDialect works', async () => {
    const dialect = new ShardedDialect({ topology: f.topology, shardKeys: { users: 'id' } });
    const first = new Kysely<DB>({ dialect });
    const before = await first.selectFrom('users').select('name').where('id', '=', 1).execute();
    await first.destroy();
    const again = new Kysely<DB>({ dialect });
    const error = await again.selectFrom('users').select('name').where('id', '=', 1).execute().catch((e: Error) => e);
    expect(error).toMatchObject({ code: ErrorCodes.DESTROYED });
    expect((error as Error).message).toMatch(/not even by a new Kysely on it: create a new ShardedDialect and a new Kysely with it/);
    const fresh = new Kysely<DB>({ dialect: new ShardedDialect({ topology: f.topology, shardKeys: { users: 'id' } }) });
    expect(await fresh.selectFrom('users').select('name').where('id', '=', 1).execute()).toEqual(before);
    await fresh.destroy();
    await again.destroy();
  });
});
