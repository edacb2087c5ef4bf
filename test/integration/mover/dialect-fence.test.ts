import { Kysely, sql } from 'kysely';
import { APP_ROLE, TABLES, type MoverFixture } from './mover-fixture';
import { fenceTestHooks } from './fence-test-hooks';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import type { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { slotOf } from '../../../src/cluster/slot-hash';
import { withShard } from '../../../src/sharding/routing/route-hint';
import { SET_TOPOLOGY_VERSION_SQL, StaleTopologyError } from '../../../src/cluster/topology-fence';
import { ErrorCodes } from '../../../src/kernel/errors';
import type { PoolLike } from '../../../src/cluster/server-pools';
import type { ServerSpec, Topology } from '../../../src/cluster/topology';
import { poolAsRole } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string; score: number };
}

let f: MoverFixture;
let catalog: TopologyCatalog;
const closeLater = fenceTestHooks('mover_dialect', 2, (fixture, c) => {
  f = fixture;
  catalog = c;
});

/** A pool connecting as the app role, so row security applies to it. */
function appPool(server: ServerSpec): PoolLike {
  return poolAsRole(server.url, APP_ROLE, 2) as unknown as PoolLike;
}

function kysely(topology: Topology, extra: Partial<ConstructorParameters<typeof ShardedDialect>[0]> = {}): { db: Kysely<DB>; dialect: ShardedDialect } {
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, createPool: appPool, fenceSessions: true, onPoolError: () => undefined, ...extra });
  const db = new Kysely<DB>({ dialect });
  closeLater(() => db.destroy());
  return { db, dialect };
}

test('a router refused by a shard after a move reloads the topology and runs the statement on the new owner; without a source, or inside a transaction, it gets the coded retryable error', async () => {
  const v1 = await f.init(2);
  await f.seed(v1, 0, 200);
  const moved = [...Array(200).keys()].find((id) => slotOf(id) < 256)!;
  const following = kysely(v1, { topologySource: catalog });
  const stale = kysely(v1);
  const inTransaction = kysely(v1, { topologySource: catalog });
  // Every session is in use before the move, so the refusals come from pooled connections tagged with version 1.
  for (const k of [following, stale, inTransaction]) expect(await k.db.selectFrom('users').select('name').where('id', '=', moved).executeTakeFirst()).toEqual({ name: `user ${moved}` });

  const result = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '0-255', to: 'shard1' });
  expect(result.error).toBeNull();

  expect(await following.db.selectFrom('users').select('name').where('id', '=', moved).executeTakeFirst()).toEqual({ name: `user ${moved}` });
  expect(following.dialect.topology.version).toBe(2);
  await following.db.updateTable('users').set({ score: 7 }).where('id', '=', moved).execute();
  expect((await f.pools[1]!.query('select score from users where id = $1', [moved])).rows).toEqual([{ score: 7 }]);

  const read = await stale.db.selectFrom('users').select('name').where('id', '=', moved).execute().catch((e: unknown) => e);
  expect(read).toBeInstanceOf(StaleTopologyError);
  expect(read).toMatchObject({ code: ErrorCodes.STALE_TOPOLOGY, retryable: true, context: { version: 1, requiredVersion: 2 } });
  const write = await stale.db.updateTable('users').set({ score: 8 }).where('id', '=', moved).execute().catch((e: unknown) => e);
  expect(write).toBeInstanceOf(StaleTopologyError);
  expect((await f.pools[1]!.query('select score from users where id = $1', [moved])).rows).toEqual([{ score: 7 }]);

  const tx = await inTransaction.db.transaction().execute((t) => t.updateTable('users').set({ score: 9 }).where('id', '=', moved).execute()).catch((e: unknown) => e);
  // Name and message together, so a failure shows which error it was.
  expect({ name: (tx as Error).name, message: (tx as Error).message }).toEqual({ name: 'StaleTopologyError', message: expect.stringContaining('roll it back and run it again') });
  expect((await f.pools[1]!.query('select score from users where id = $1', [moved])).rows).toEqual([{ score: 7 }]);
});

/** Every statement the dialect's pools run, as `shardId: <verb, or the function a select calls>` (`shardId: tag` for the topology version's), in order. */
function recordingPools(log: string[]): (server: ServerSpec) => PoolLike {
  return (server) => {
    const pool = appPool(server);
    const shardId = f.shards.find((s) => s.primaryUrl === server.url)?.id ?? server.redactedUrl;
    return {
      connect: async () => {
        const client = await pool.connect();
        const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
        (client as { query: unknown }).query = (text: unknown, ...rest: unknown[]) => {
          const statement = typeof text === 'string' ? text : (text as { text: string }).text;
          log.push(`${shardId}: ${statement === SET_TOPOLOGY_VERSION_SQL ? 'tag' : statement.split(/[\s(]+/)[statement.startsWith('select') ? 1 : 0]}`);
          return query(text, ...rest);
        };
        return client;
      },
      end: () => pool.end(),
      on: (event, listener) => pool.on(event, listener),
    };
  };
}

test("the dialect's own pools start every connection with its topology version (no extra statement)", async () => {
  const latest = (await catalog.latest())!;
  const dialect = new ShardedDialect({ topology: latest, shardKeys: { users: 'id' }, onPoolError: () => undefined });
  const db = new Kysely<DB>({ dialect });
  closeLater(() => db.destroy());
  const { rows } = await sql<{ v: string }>`select current_setting('kysely_scale.topology_version') as v`.execute(db.withPlugin(withShard('shard0')));
  expect(rows).toEqual([{ v: String(latest.version) }]);
});

test('a split write whose source part the fence refused while its other part committed runs that part again on the new owner once the move publishes: the caller sees success, rows in VALUES order', async () => {
  // Goes on from the first test's move: users 0-199, slots 0-255 on shard1.
  const v1 = (await catalog.latest())!;
  const movingSlots = (id: number): boolean => slotOf(id) >= 512 && slotOf(id) < 768;
  const fresh = [...Array(5000).keys()].map((i) => 300_000 + i);
  const [newMoving1, newMoving2, staleMoving] = fresh.filter((id) => movingSlots(id) && v1.shardForSlot(slotOf(id)).id === 'shard0');
  const [newTarget, staleTarget] = fresh.filter((id) => v1.shardForSlot(slotOf(id)).id === 'shard1') as [number, number];
  const oldMoving = [...Array(200).keys()].find((id) => movingSlots(id) && v1.shardForSlot(slotOf(id)).id === 'shard0')!;
  const oldTarget = [...Array(200).keys()].find((id) => v1.shardForSlot(slotOf(id)).id === 'shard1')!;
  // The dialect's first read of the catalog after a refusal: by then its parts have settled.
  let caughtUp: () => void = () => undefined;
  const catchingUp = new Promise<void>((resolve) => (caughtUp = resolve));
  const signalling = { latest: () => (caughtUp(), catalog.latest()) };
  const following = kysely(v1, { topologySource: signalling });
  const stale = kysely(v1);
  let insert: Promise<unknown> | undefined;
  let update: Promise<unknown> | undefined;
  let staleInsert: Promise<unknown> | undefined;
  const duringFence: Record<string, unknown> = {};
  const hook = async (_batch: unknown, point: string): Promise<void> => {
    if (point !== 'fenced') return;
    insert = following.db.insertInto('users').values([{ id: newMoving1!, name: 'm1', score: 1 }, { id: newTarget, name: 't', score: 2 }, { id: newMoving2!, name: 'm2', score: 3 }]).returning(['id', 'name']).execute();
    // (Or the insert already ended: without the retry it fails at once, and so does the test.)
    await Promise.race([catchingUp, insert.then(() => undefined, () => undefined)]);
    update = following.db.updateTable('users').set({ score: 50 }).where('id', 'in', [oldMoving, oldTarget]).returning('id').execute();
    // The shard that does not move committed its part; the fenced source wrote nothing.
    duringFence.committed = (await f.pools[1]!.query('select id::int from users where id = $1', [newTarget])).rows;
    duringFence.moving = (await Promise.all(f.pools.map((p) => p.query('select id from users where id = any($1)', [[newMoving1, newMoving2]])))).map((r) => r.rowCount);
    staleInsert = stale.db.insertInto('users').values([{ id: staleMoving!, name: 'x', score: 0 }, { id: staleTarget, name: 'y', score: 0 }]).execute().catch((e: unknown) => e);
    await staleInsert;
  };
  const result = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '512-767', to: 'shard1', hook });
  expect(result.error).toBeNull();
  expect(duringFence).toEqual({ committed: [{ id: newTarget }], moving: [0, 0] });
  expect((await insert) as unknown[]).toEqual([
    { id: String(newMoving1), name: 'm1' },
    { id: String(newTarget), name: 't' },
    { id: String(newMoving2), name: 'm2' },
  ]);
  expect(((await update) as { id: string }[]).map((r) => Number(r.id)).sort((a, b) => a - b)).toEqual([oldMoving, oldTarget].sort((a, b) => a - b));
  // Each row once, on its owner under the new topology.
  const rows = await f.rowsOf('users');
  for (const id of [newMoving1!, newMoving2!, newTarget, oldMoving]) expect(rows.filter((r) => Number(r.key) === id).map((r) => r.shard)).toEqual([1]);
  expect((await f.pools[1]!.query('select score from users where id = any($1) order by id', [[oldMoving, oldTarget]])).rows).toEqual([{ score: 50 }, { score: 50 }]);
  // A router that cannot reload gets the partial write reported: the source's part wrote nothing.
  expect(await staleInsert).toMatchObject({ code: ErrorCodes.PARTIAL_WRITE, context: { committed: ['shard1'], failed: ['shard0'] } });
});

test('an or-keyed write across shards refused on the fenced source is not run again (that would write the other shard twice): the caller gets PartialWriteError and the committed row changed once', async () => {
  // Goes on from the tests above.
  const v = (await catalog.latest())!;
  const movingSlots = (id: number): boolean => slotOf(id) >= 768 && slotOf(id) < 1024;
  const ids = [...Array(200).keys()];
  const moving = ids.find((id) => movingSlots(id) && v.shardForSlot(slotOf(id)).id === 'shard0')!;
  const onTarget = ids.find((id) => v.shardForSlot(slotOf(id)).id === 'shard1')!;
  const score = async (id: number): Promise<number> => (await Promise.all(f.pools.map((p) => p.query<{ score: number }>('select score from users where id = $1', [id])))).flatMap((r) => r.rows)[0]!.score;
  const before = { moving: await score(moving), onTarget: await score(onTarget) };
  // Runs under the fence; the move goes on once the statement ended or began waiting for the new
  // version (were it run again after the publish, shard1's row would change twice).
  let caughtUp: () => void = () => undefined;
  const catchingUp = new Promise<void>((resolve) => (caughtUp = resolve));
  const following = kysely(v, { topologySource: { latest: () => (caughtUp(), catalog.latest()) } });
  let orKeyed: Promise<unknown> | undefined;
  const hook = async (_batch: unknown, point: string): Promise<void> => {
    if (point !== 'fenced') return;
    orKeyed = following.db.updateTable('users').set((eb) => ({ score: eb('score', '+', 10) })).where((eb) => eb.or([eb('id', '=', moving), eb('id', '=', onTarget)])).execute().catch((e: unknown) => e);
    await Promise.race([orKeyed, catchingUp]);
  };
  const result = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '768-1023', to: 'shard1', hook });
  expect(result.error).toBeNull();
  expect(await orKeyed).toMatchObject({ code: ErrorCodes.PARTIAL_WRITE, context: { committed: ['shard1'], failed: ['shard0'] } });
  expect({ moving: await score(moving), onTarget: await score(onTarget) }).toEqual({ moving: before.moving, onTarget: before.onTarget + 10 });
});

test('a refused statement retried on the new owner puts no statement on the old owner\'s client first when it was the connection\'s first (the client goes back to its pool); after other statements (which may have set session state) that client is re-tagged', async () => {
  const v1 = (await catalog.latest())!;
  // Slots 1024-1279 of shard0 (the tests above moved lower ones); users 0-199 were seeded by the first test.
  const moved = [...Array(200).keys()].find((id) => slotOf(id) >= 1024 && slotOf(id) < 1280)!;
  expect(v1.shardForSlot(slotOf(moved)).id).toBe('shard0');
  const log: string[] = [];
  const plain = kysely(v1, { topologySource: catalog, createPool: recordingPools(log) });
  const withSession = kysely(v1, { topologySource: catalog, createPool: recordingPools(log) });
  const result = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '1024-1279', to: 'shard1' });
  expect(result.error).toBeNull();

  await plain.db.updateTable('users').set({ score: 11 }).where('id', '=', moved).execute();
  // shard0 (tagged with version 1 at checkout) refuses; the retry goes straight to shard1: a checkout there, tagged with the new version, and the update.
  expect(log.splice(0)).toEqual(['shard0: tag', 'shard0: update', 'shard1: tag', 'shard1: update']);
  expect((await f.pools[1]!.query('select score from users where id = $1', [moved])).rows).toEqual([{ score: 11 }]);

  await withSession.db.connection().execute(async (conn) => {
    // Session state set by a query-builder statement (not raw SQL: the connection cannot tell), as apps set row-security settings.
    const onShard0 = conn.withPlugin(withShard('shard0'));
    await onShard0.selectNoFrom(sql<string>`set_config('app.note', 'kept', false)`.as('v')).execute();
    await conn.updateTable('users').set({ score: 12 }).where('id', '=', moved).execute();
    expect(await onShard0.selectNoFrom(sql<string>`current_setting('app.note')`.as('note')).execute()).toEqual([{ note: 'kept' }]);
  });
  // Not the connection's first statement: the shard0 client may carry session state (it does), so it is re-tagged before the retry and stays held.
  expect(log.splice(0)).toEqual(['shard0: tag', 'shard0: set_config', 'shard0: update', 'shard0: tag', 'shard1: tag', 'shard1: update', 'shard0: current_setting']);
  expect((await f.pools[1]!.query('select score from users where id = $1', [moved])).rows).toEqual([{ score: 12 }]);
});
