/**
 * Shared set-up of the tests of a cutover whose catalog publish is held or frozen: a mover fixture
 * of `shardCount` shards seeded with 300 users, a catalog on a server of its own (freezing it
 * freezes no shard) behind a proxy that can hold a publish, short catalog deadlines (1 s) for every
 * catalog connection of the mover, and what the tests read: the latest topology, a shard's guard,
 * a statement of a router at a given version. With `unsharded`, the shards also have the
 * unsharded `notes` table (its shared rows on the first shard, the holder), for drains.
 */
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { CATALOG_DEADLINE_ENVIRONMENT } from '../../../src/admin/catalog-connections';
import { slotOf } from '../../../src/cluster/slot-hash';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { startHeldPublishProxy, type HeldPublishProxy } from './held-publish-proxy';
import { startUnshardedFixture } from './unsharded-fixture';
import { appStatement } from './app-statement';
import { drainShard } from '../../../src/admin/mover/mover-operations';
import type { MoveResult } from '../../../src/admin/mover/move-result';

/** What else the fixture sets up: the unsharded `notes` table, and the topology's slot count (default 4096). */
export interface PublishHeldOptions {
  readonly unsharded?: boolean;
  readonly slotCount?: number;
}

/** A shard's guard as the tests check it. */
export interface GuardState {
  readonly required: number;
  readonly hidesBatch: boolean;
  readonly hidesAny: boolean;
  readonly fence: string | null;
}

export interface PublishHeldFixture {
  readonly f: MoverFixture;
  readonly catalogCluster: TestCluster;
  readonly catalogUrl: string;
  readonly proxy: HeldPublishProxy;
  latest(): Promise<Topology>;
  /** 64 slots of shard0 (or shard1 when shard0 has fewer), to the other of the two, and a seeded user in them. */
  plan(start: Topology): { from: string; to: string; slots: number[]; user: number };
  /** `shard`'s required version, whether it hides all of `slots` (or any slot), and its move fence's expiry. */
  guard(shard: string, slots: readonly number[]): Promise<GuardState>;
  /** A statement of a router at `version` on `shard`: its rows, or its SQLSTATE. */
  routed(shard: string, version: number, sql: string, values: unknown[]): Promise<string>;
  close(): Promise<void>;
}

export async function startPublishHeldFixture(name: string, shardCount: number, options: PublishHeldOptions = {}): Promise<PublishHeldFixture> {
  const saved: Record<string, string | undefined> = {};
  for (const [option, millis] of [['connectionTimeoutMillis', '1000'], ['statementTimeoutMillis', '1000']] as const) {
    const variable = CATALOG_DEADLINE_ENVIRONMENT[option];
    saved[variable] = process.env[variable];
    process.env[variable] = millis;
  }
  const f = options.unsharded === true ? await startUnshardedFixture(name, shardCount) : await startMoverFixture(name, shardCount);
  const catalogCluster = await startTestCluster({ shards: 1, backend: 'local' });
  const catalogUrl = (await catalogCluster.createDatabase(`${name}_catalog`))[0]!.primaryUrl;
  const v1 = createTopology({ shards: f.shards.map((s) => ({ id: s.id, primary: s.primaryUrl, replicas: [...s.replicaUrls] })), ...(options.slotCount === undefined ? {} : { slotCount: options.slotCount }) });
  const catalog = new TopologyCatalog({ url: catalogUrl });
  await catalog.install();
  await catalog.publish(v1, 'init');
  await catalog.close();
  await f.seed(v1, 0, 300);
  const proxy = await startHeldPublishProxy(Number(new URL(catalogUrl).port));
  const poolOf = (shard: string) => f.pools[Number(shard.replace('shard', ''))]!;
  return {
    f,
    catalogCluster,
    catalogUrl,
    proxy,
    async latest() {
      const reader = new TopologyCatalog({ url: catalogUrl });
      try {
        return (await reader.latest())!;
      } finally {
        await reader.close();
      }
    },
    plan(start) {
      const from = start.slotsOf('shard0').length >= 64 ? 'shard0' : 'shard1';
      const to = from === 'shard0' ? 'shard1' : 'shard0';
      const slots = start.slotsOf(from).slice(0, 64);
      const user = [...Array(300).keys()].find((id) => slots.includes(slotOf(id)))!;
      return { from, to, slots, user };
    },
    async guard(shard, slots) {
      const pool = poolOf(shard);
      const { rows } = await pool.query<{ required: number; hidden: string | null }>('select required_version as required, hidden::text as hidden from kysely_scale.shard_guard');
      const hidden = rows[0]!.hidden;
      const { rows: fences } = await pool.query<{ until: string }>('select fenced_until::text as until from kysely_scale.slot_move where slot < 0');
      return { required: rows[0]!.required, hidesBatch: hidden !== null && slots.every((s) => hidden[s] === '1'), hidesAny: hidden !== null && hidden.includes('1'), fence: fences[0]?.until ?? null };
    },
    routed(shard, version, sql, values) {
      return appStatement(f.appUrl(Number(shard.replace('shard', ''))), version, sql, values);
    },
    async close() {
      await proxy.close();
      await f.close();
      await catalogCluster.stop();
      for (const [variable, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[variable];
        else process.env[variable] = value;
      }
    },
  };
}

/**
 * Drains shard0 of a fixture started with `unsharded`, its unsharded step's publish held by the
 * proxy (armed once the source switched) and the publish's outcome check refused: the drain stops
 * open, the outcome unknown. The held publish is the caller's to release.
 */
export function drainWithUnshardedPublishHeld(fx: PublishHeldFixture): Promise<MoveResult> {
  return drainShard({
    catalog: fx.proxy.via(fx.catalogUrl),
    tables: TABLES,
    shardId: 'shard0',
    tuning: { cleanupDelayMillis: 0 },
    hook: (_batch, at) => {
      if (at === 'unsharded-switched') fx.proxy.arm('in exclusive mode', 'publish check');
    },
  });
}
