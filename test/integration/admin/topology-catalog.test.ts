import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { slotOf } from '../../../src/cluster/slot-hash';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { TopologyCatalog, type TopologyWatch } from '../../../src/admin/topology-catalog';
import { followCatalog } from '../../../src/admin/follow-catalog';
import { ErrorCodes } from '../../../src/kernel/errors';
import { OperatorBusyError, TopologyConflictError } from '../../../src/admin/admin-errors';
import { TopologyError } from '../../../src/cluster/cluster-errors';
import { eventually } from '../../support/postgres-replication';
import { directPool } from '../../support/direct-pool';

// The catalog lives in its own database on the cluster's first primary; the "shards" it describes
// are the cluster's two primaries.
let cluster: TestCluster;
let shards: readonly TestShardUrls[];
let catalogUrl: string;
const closers: (() => Promise<unknown>)[] = [];

function catalog(schema: string): TopologyCatalog {
  const c = new TopologyCatalog({ url: catalogUrl, schema, reconnectDelayMillis: 50 });
  closers.push(() => c.close());
  return c;
}

function twoShards(): Topology {
  return createTopology({ shards: shards.map((s) => ({ id: s.id, primary: s.primaryUrl, replicas: [...s.replicaUrls] })) });
}

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2 });
  shards = await cluster.createDatabase('catalog_shards');
  [{ primaryUrl: catalogUrl }] = (await cluster.createDatabase('catalog_db')) as [TestShardUrls];
}, 60_000);

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await cluster?.stop();
});

describe('topology catalog', () => {
  test('publishes versions and reads back the same topology, ownership included', async () => {
    const c = catalog('cat_roundtrip');
    await c.install();
    await c.install(); // idempotent
    expect(await c.latest()).toBeUndefined();
    const v1 = twoShards();
    await c.publish(v1, 'initial');
    const moved = v1.withSlotsMoved([0, 1, 2, 4095], shards[1]!.id);
    // The publish inlines its values in one multi-statement query: quotes, backslashes, dollar quotes and non-ASCII come back unchanged.
    await c.publish(moved, `move four slots: it's \\ $$ $x$ "ok" — ✓`);
    const latest = (await c.latest())!;
    expect(latest.version).toBe(2);
    expect(latest.ownerIds()).toEqual(moved.ownerIds());
    expect(latest.shards.map((s) => [s.id, s.primary.url, s.replicas.map((r) => r.url)])).toEqual(moved.shards.map((s) => [s.id, s.primary.url, s.replicas.map((r) => r.url)]));
    expect((await c.history()).map((h) => [h.version, h.note])).toEqual([
      [2, `move four slots: it's \\ $$ $x$ "ok" — ✓`],
      [1, 'initial'],
    ]);
    // One version, older ones included; none for a version not published.
    expect((await c.version(1))!.ownerIds()).toEqual(v1.ownerIds());
    expect((await c.version(2))!.ownerIds()).toEqual(moved.ownerIds());
    expect(await c.version(3)).toBeUndefined();
    for (const bad of [0, 1.5, 2 ** 31]) await expect(c.version(bad)).rejects.toMatchObject({ code: ErrorCodes.INVALID_CONFIG });
  });

  test('a version that is not newer is refused and writes nothing; of two racing publishers one wins', async () => {
    const c = catalog('cat_conflict');
    await c.install();
    const v1 = twoShards();
    await c.publish(v1);
    const error = await c.publish(v1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TopologyConflictError);
    expect(error).toMatchObject({ code: ErrorCodes.TOPOLOGY_CONFLICT, context: { latest: 1, attempted: 1 } });
    const a = v1.withSlotsMoved([10], shards[1]!.id);
    const b = v1.withSlotsMoved([20], shards[1]!.id);
    const outcomes = await Promise.allSettled([c.publish(a, 'a'), c.publish(b, 'b')]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect((await c.history()).map((h) => h.version)).toEqual([2, 1]);
  });

  test('a malformed document is reported as a topology error', async () => {
    const c = catalog('cat_malformed');
    await c.install();
    const pool = directPool({ connectionString: catalogUrl });
    try {
      await pool.query(`insert into cat_malformed.topology (version, document) values (1, $1)`, [JSON.stringify({ version: 1, slotCount: 4096, shards: [], ranges: [[0, 10, 'x']] })]);
    } finally {
      await pool.end();
    }
    await expect(c.latest()).rejects.toBeInstanceOf(TopologyError);
  });

  test('dialects that follow the catalog switch to each new version, also after the catalog server restarts', async () => {
    const c = catalog('cat_follow');
    await c.install();
    const v1 = twoShards();
    await c.publish(v1);
    const dialects = [0, 1].map(() => new ShardedDialect({ topology: createTopology({ shards: shards.map((s) => ({ id: s.id, primary: s.primaryUrl })), version: 1 }), shardKeys: { users: 'id' } }));
    const dbs = dialects.map((dialect) => new Kysely<unknown>({ dialect }));
    closers.push(() => Promise.all(dbs.map((db) => db.destroy())));
    const errors: Error[] = [];
    const watches: TopologyWatch[] = [];
    for (const dialect of dialects) watches.push(await followCatalog(dialect, c, (e) => errors.push(e)));
    closers.push(() => Promise.all(watches.map((w) => w.close())));

    // A key on shard 0 whose slot moves to shard 1.
    const key = [...Array(1000).keys()].find((k) => v1.shardForKey(k).index === 0)!;
    const v2 = v1.withSlotsMoved([slotOf(key)], shards[1]!.id);
    await c.publish(v2);
    await eventually('both dialects on version 2', async () => dialects.every((d) => d.topology.version === 2));
    expect(dialects.map((d) => d.topology.shardForKey(key).id)).toEqual([shards[1]!.id, shards[1]!.id]);

    // The catalog server restarts: the watches reconnect (reloading the latest version) and keep following.
    const server = cluster.shards[0]!.primary;
    await server.stop();
    await server.start();
    await c.publish(v2.withSlotsMoved([slotOf(key)], shards[0]!.id));
    await eventually('both dialects on version 3', async () => dialects.every((d) => d.topology.version === 3));
    expect(dialects.map((d) => d.topology.shardForKey(key).id)).toEqual([shards[0]!.id, shards[0]!.id]);
    expect(errors.length).toBeGreaterThan(0); // the lost connections were reported, not thrown
  }, 30_000);

  test('the operator lock admits one operator at a time', async () => {
    const c = catalog('cat_lock');
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const first = c.withOperatorLock(async () => {
      entered();
      await held;
      return 'first done';
    });
    await inside;
    const second = await c.withOperatorLock(async () => 'second ran').catch((e: unknown) => e);
    expect(second).toBeInstanceOf(OperatorBusyError);
    expect((second as OperatorBusyError).code).toBe(ErrorCodes.OPERATOR_BUSY);
    expect((second as Error).message).toMatch(/Another operator is changing the topology \(PostgreSQL backend \d+/);
    release();
    expect(await first).toBe('first done');
    expect(await c.withOperatorLock(async () => 'third ran')).toBe('third ran');
  });

  test('a watch delivers every version in order, also those published while its connection was down', async () => {
    const c = catalog('cat_every');
    await c.install();
    let v = twoShards();
    await c.publish(v);
    const delivered: number[] = [];
    const errors: Error[] = [];
    const watch = await c.watch((t) => {
      delivered.push(t.version);
      if (t.version === 2) throw new Error('listener failed'); // reported; the watch goes on
    }, (e) => errors.push(e));
    closers.push(() => watch.close());
    v = v.withSlotsMoved([1], shards[1]!.id);
    await c.publish(v);
    await eventually('version 2 delivered', async () => delivered.includes(2));
    // Cut the watch's connection, publish two versions, and let it reconnect.
    const pool = directPool({ connectionString: catalogUrl });
    try {
      await pool.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'kysely-scale catalog watch (cat_every)'");
    } finally {
      await pool.end();
    }
    for (const slot of [2, 3]) {
      v = v.withSlotsMoved([slot], shards[1]!.id);
      await c.publish(v);
    }
    await eventually('version 4 delivered', async () => delivered.includes(4));
    expect(delivered).toEqual([1, 2, 3, 4]);
    expect(errors.map((e) => e.message)).toContain('listener failed');
  });

  test('a watch of a catalog never installed fails clearly and leaves no connection behind', async () => {
    const c = catalog('cat_missing');
    const error = await c.watch(() => undefined).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TopologyError);
    expect((error as Error).message).toMatch(/is not installed: run catalog.install\(\)/);
    // So does a publish, and the catalog's connection is usable afterwards (its transaction was rolled back).
    for (let i = 0; i < 2; i++) {
      const refused = await c.publish(twoShards()).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(TopologyError);
      expect((refused as Error).message).toMatch(/is not installed: run catalog.install\(\)/);
    }
    await c.install();
    await c.publish(twoShards(), 'after install');
    expect((await c.latest())?.version).toBe(1);
    const pool = directPool({ connectionString: catalogUrl });
    try {
      await eventually('no watch connection left', async () =>
        (await pool.query("select 1 from pg_stat_activity where application_name = 'kysely-scale catalog watch (cat_missing)'")).rowCount === 0,
      );
    } finally {
      await pool.end();
    }
  });

  test('an operator whose lock session is lost is told so, the process survives, and the lock is free again', async () => {
    const c = catalog('cat_lock_lost');
    const outcome = await c.withOperatorLock(async (lost) => {
      const pool = directPool({ connectionString: catalogUrl });
      try {
        await pool.query("select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and granted and pid <> pg_backend_pid()");
      } finally {
        await pool.end();
      }
      await eventually('the loss noticed', async () => lost.aborted);
      return 'stopped before publishing';
    });
    expect(outcome).toBe('stopped before publishing');
    expect(await c.withOperatorLock(async () => 'next operator ran')).toBe('next operator ran');
  });
});
