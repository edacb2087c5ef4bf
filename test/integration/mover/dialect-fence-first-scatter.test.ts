/**
 * Review 66: a refused statement that was its connection's first but reached several shards may have
 * run on some of them, leaving session state on their clients: the clients are re-tagged and kept,
 * not given back to their pools (where another request would take that state).
 */
import { Kysely, sql } from 'kysely';
import type { PoolClient } from 'pg';
import { APP_ROLE, TABLES, type MoverFixture } from './mover-fixture';
import { fenceTestHooks } from './fence-test-hooks';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import type { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { slotOf } from '../../../src/cluster/slot-hash';
import { withShard } from '../../../src/sharding/routing/route-hint';
import type { PoolLike } from '../../../src/cluster/server-pools';
import type { ServerSpec, Topology } from '../../../src/cluster/topology';
import { poolAsRole } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string; score: number };
}

let f: MoverFixture;
let catalog: TopologyCatalog;
const closeLater = fenceTestHooks('mover_first_scatter', 3, (fixture, c) => {
  f = fixture;
  catalog = c;
});

/**
 * A router whose shard2 pool lets "another request" (the thief) check out a client just before the
 * connection's second checkout of shard2 (what a busy app does between a give-back and the retry).
 */
function router(v1: Topology) {
  let shard2Connects = 0;
  const thief: { client?: PoolClient } = {};
  const createPool = (server: ServerSpec): PoolLike => {
    const pool = poolAsRole(server.url, APP_ROLE, 4);
    if (server.url !== f.shards[2]!.primaryUrl) return pool as unknown as PoolLike;
    return {
      connect: async () => {
        if (++shard2Connects === 2) thief.client = await pool.connect();
        return pool.connect();
      },
      end: () => pool.end(),
      on: (event: string, listener: (...args: unknown[]) => void) => pool.on(event as 'error', listener),
    } as unknown as PoolLike;
  };
  const dialect = new ShardedDialect({ topology: v1, shardKeys: { users: 'id' }, keylessPolicy: { users: 'scatter' }, createPool, fenceSessions: true, onPoolError: () => undefined, topologySource: catalog });
  const db = new Kysely<DB>({ dialect });
  closeLater(() => db.destroy());
  return { db, thief };
}

test("a connection's first statement, a scatter answered by shard2 and refused by shard0 and shard1: shard2's client, which carries what the statement set, is kept (re-tagged), not given to another request", async () => {
  const v1 = await f.init(3);
  await f.seed(v1, 0, 300);
  const onShard = (id: string) => [...Array(300).keys()].find((k) => slotOf(k) >= 256 && v1.shardForSlot(slotOf(k)).id === id)!;
  const names = ['shard0', 'shard1', 'shard2'].map((s) => `user ${onShard(s)}`);
  const firstStatement = router(v1);
  const afterAnother = router(v1);
  expect((await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '0-255', to: 'shard1' })).error).toBeNull();

  // The app sets a per-request setting on every shard, and resets it before giving the connection back.
  const request = (db: Kysely<DB>, warmUp: boolean) =>
    db.connection().execute(async (conn) => {
      if (warmUp) await conn.withPlugin(withShard('shard0')).selectNoFrom(sql<number>`1`.as('one')).execute();
      await conn.selectFrom('users').select(sql<string>`set_config('app.tenant', 'A', false)`.as('t')).where('name', 'in', names).execute();
      await conn.selectFrom('users').select(sql<string>`set_config('app.tenant', '', false)`.as('t')).where('name', 'in', names).execute();
    });
  const thiefSees = async (thief: { client?: PoolClient }) => {
    if (thief.client === undefined) return 'no second checkout of shard2';
    const { rows } = await thief.client.query<{ t: string | null }>(`select current_setting('app.tenant', true) as t`);
    thief.client.release();
    return rows[0]!.t;
  };
  await request(firstStatement.db, false);
  await request(afterAnother.db, true);
  const seen = { firstStatement: await thiefSees(firstStatement.thief), afterAnotherStatement: await thiefSees(afterAnother.thief) };
  console.log(JSON.stringify(seen));
  expect(seen).toEqual({ firstStatement: 'no second checkout of shard2', afterAnotherStatement: 'no second checkout of shard2' });
});
