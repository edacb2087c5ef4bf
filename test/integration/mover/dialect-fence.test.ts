import { Kysely, sql } from 'kysely';
import { startMoverFixture, APP_ROLE, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { slotOf } from '../../../src/cluster/slot-hash';
import { withShard } from '../../../src/sharding/routing/route-hint';
import { StaleTopologyError } from '../../../src/cluster/topology-fence';
import { ErrorCodes } from '../../../src/kernel/errors';
import type { PoolLike } from '../../../src/cluster/server-pools';
import type { ServerSpec, Topology } from '../../../src/cluster/topology';
import { directPool } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string; score: number };
}

let f: MoverFixture;
let catalog: TopologyCatalog;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  f = await startMoverFixture('mover_dialect', 2);
  catalog = new TopologyCatalog({ url: f.catalogUrl });
}, 60_000);

afterAll(async () => {
  for (const close of closers) await close().catch(() => undefined);
  await catalog?.close();
  await f?.close();
});

/** A pool connecting as the app role, so row security applies to it. */
function appPool(server: ServerSpec): PoolLike {
  const url = new URL(server.url);
  url.username = APP_ROLE;
  const pool = directPool({ connectionString: url.toString(), max: 2 });
  pool.on('error', () => undefined);
  return pool as unknown as PoolLike;
}

function kysely(topology: Topology, extra: Partial<ConstructorParameters<typeof ShardedDialect>[0]> = {}): { db: Kysely<DB>; dialect: ShardedDialect } {
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, createPool: appPool, fenceSessions: true, onPoolError: () => undefined, ...extra });
  const db = new Kysely<DB>({ dialect });
  closers.push(() => db.destroy());
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

test("the dialect's own pools start every connection with its topology version (no extra statement)", async () => {
  const latest = (await catalog.latest())!;
  const dialect = new ShardedDialect({ topology: latest, shardKeys: { users: 'id' }, onPoolError: () => undefined });
  const db = new Kysely<DB>({ dialect });
  closers.push(() => db.destroy());
  const { rows } = await sql<{ v: string }>`select current_setting('kysely_scale.topology_version') as v`.execute(db.withPlugin(withShard('shard0')));
  expect(rows).toEqual([{ v: String(latest.version) }]);
});
