import { Pool } from 'pg';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { slotOf } from '../../../src/cluster/slot-hash';
import { parseSlotRanges } from '../../../src/admin/mover/slot-ranges';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { SLOT_FUNCTIONS_SQL } from '../../../src/cluster/slot-function-sql';
import { directPool } from '../../support/direct-pool';

/** The schema every shard of a mover test holds. */
export const SCHEMA_SQL = `
create table users (id bigint primary key, name text not null, score integer not null default 0);
create table orders (user_id bigint not null, id integer not null, amount numeric(12, 2) not null, primary key (user_id, id));
create table countries (code text primary key, name text);
`;

/** The sharded tables of a mover test. */
export const TABLES = Object.freeze({ users: 'id', orders: 'user_id' });

/** The role app processes use: row security applies to it (it does not to superusers). */
export const APP_ROLE = 'mover_app';

/** Rows (users, and their two orders each) that `seed(topology, from, to)` wrote in the slots of `slots` (`0-99,200`). */
export function seededRowsIn(slots: string, from: number, to: number, slotCount = 4096): number {
  const wanted = new Set(parseSlotRanges(slots, slotCount));
  let users = 0;
  for (let id = from; id < to; id++) if (wanted.has(slotOf(id, slotCount))) users++;
  return users * 3;
}

/** A cluster, databases named `name` on every shard plus a catalog database, schema, an app role and seeded rows. */
export interface MoverFixture {
  readonly cluster: TestCluster;
  readonly shards: readonly TestShardUrls[];
  readonly catalogUrl: string;
  /** Pools (superuser) per shard, in shard order. */
  readonly pools: Pool[];
  /** URL of `shards[i]` as the app role. */
  appUrl(i: number): string;
  /** Publishes version 1 over the first `count` shards. */
  init(count: number, slotCount?: number): Promise<Topology>;
  /** Inserts users `from..to-1` (and two orders each) on their owning shard under `topology`. */
  seed(topology: Topology, from: number, to: number): Promise<void>;
  /** Rows of `table` on every shard: `[shardIndex, key][]`. */
  rowsOf(table: 'users' | 'orders'): Promise<{ shard: number; key: string }[]>;
  close(): Promise<void>;
}

export async function startMoverFixture(name: string, shardCount: number, replicasPerShard = 0): Promise<MoverFixture> {
  const c = await startTestCluster({ shards: shardCount, replicasPerShard, backend: 'local' });
  const shards = (await c.createDatabase(name)).slice(0, shardCount);
  const [{ primaryUrl: catalogUrl }] = (await c.createDatabase(`${name}_catalog`)) as [TestShardUrls];
  const pools = shards.map((s) => {
    const p = directPool({ connectionString: s.primaryUrl, max: 3 });
    p.on('error', () => undefined);
    return p;
  });
  for (const pool of pools) {
    await pool.query(SCHEMA_SQL);
    await pool.query(SLOT_FUNCTIONS_SQL);
    await pool.query(`do $$ begin if not exists (select 1 from pg_roles where rolname = '${APP_ROLE}') then create role ${APP_ROLE} login; end if; end $$`);
    await pool.query(`grant select, insert, update, delete on users, orders, countries to ${APP_ROLE}`);
  }
  return {
    cluster: c,
    shards,
    catalogUrl,
    pools,
    appUrl(i) {
      const url = new URL(shards[i]!.primaryUrl);
      url.username = APP_ROLE;
      return url.toString();
    },
    async init(count, slotCount) {
      const topology = createTopology({ shards: shards.slice(0, count).map((s) => ({ id: s.id, primary: s.primaryUrl, replicas: [...s.replicaUrls] })), ...(slotCount === undefined ? {} : { slotCount }) });
      const catalog = new TopologyCatalog({ url: catalogUrl });
      await catalog.install();
      await catalog.publish(topology, 'init');
      await catalog.close();
      return topology;
    },
    async seed(topology, from, to) {
      const byShard = new Map<number, number[]>();
      for (let id = from; id < to; id++) {
        const i = topology.shardForSlot(slotOf(id, topology.slotCount)).index;
        byShard.set(i, [...(byShard.get(i) ?? []), id]);
      }
      for (const [i, ids] of byShard) {
        const index = shards.findIndex((s) => s.id === topology.shards[i]!.id);
        await pools[index]!.query(`insert into users (id, name) select u, 'user ' || u from unnest($1::bigint[]) u`, [ids]);
        await pools[index]!.query(`insert into orders (user_id, id, amount) select u, n, u * 10 + n from unnest($1::bigint[]) u, generate_series(1, 2) n`, [ids]);
      }
    },
    async rowsOf(table) {
      const key = table === 'users' ? 'id' : 'user_id';
      const out: { shard: number; key: string }[] = [];
      for (let i = 0; i < pools.length; i++) {
        const { rows } = await pools[i]!.query<{ k: string }>(`select ${key}::text as k from ${table}`);
        for (const r of rows) out.push({ shard: i, key: r.k });
      }
      return out;
    },
    async close() {
      await Promise.all(pools.map((p) => p.end()));
      await c.stop();
    },
  };
}
