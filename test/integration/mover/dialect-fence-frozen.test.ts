/**
 * A statement a shard refused for a slot move runs again once the topology is reloaded, and
 * nothing on that path waits for a server without a deadline: a frozen (SIGSTOP) replica the
 * connection happens to hold is dropped rather than re-tagged, and a frozen primary it holds
 * fails the retry within `fenceWaitMillis`, naming it, instead of hanging. Two shards, each a
 * primary with a real streaming replica; the refusal is raised as a move raises it (the shard's
 * guard requires a newer version, which the catalog publishes).
 */
import { Kysely, sql } from 'kysely';
import { directClient } from '../../support/direct-pool';
import { startMoverFixture, type MoverFixture } from './mover-fixture';
import { installGuard } from '../../../src/admin/mover/shard-guard';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import type { RouteEvent } from '../../../src/sharding/dialect/statement-telemetry';
import { withShard } from '../../../src/sharding/routing/route-hint';
import { StaleTopologyError } from '../../../src/cluster/topology-fence';
import { slotOf } from '../../../src/cluster/slot-hash';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { ErrorCodes } from '../../../src/kernel/errors';
import { waitForReplay } from '../../support/postgres-replication';
import { freeze, until } from '../replication/replication-fault-fixture';

interface DB {
  users: { id: number; name: string; score: number };
}

const FENCE_WAIT = 1000;
let f: MoverFixture;
let catalog: TopologyCatalog;
let topology: Topology;
const open: Kysely<DB>[] = [];

beforeAll(async () => {
  f = await startMoverFixture('fence_frozen', 2, 1);
  topology = await f.init(2);
  for (let i = 0; i < 2; i++) {
    const client = directClient({ connectionString: f.shards[i]!.primaryUrl });
    await client.connect();
    await installGuard(client, f.shards[i]!.id, [{ name: 'users', keyColumn: 'id' }], topology.slotCount);
    await client.end();
  }
  await f.seed(topology, 0, 100);
  for (const shard of f.shards) for (const replica of shard.replicaUrls) await waitForReplay(shard.primaryUrl, replica);
  catalog = new TopologyCatalog({ url: f.catalogUrl });
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.destroy()));
  await catalog?.close();
  await f?.close();
});

/** A user id whose row lives on shard `index`. */
const userOn = (index: number): number => [...Array(100).keys()].find((id) => topology.shardForSlot(slotOf(id, topology.slotCount)).index === index)!;

async function connect(): Promise<{ db: Kysely<DB>; dialect: ShardedDialect; routes: RouteEvent[] }> {
  const routes: RouteEvent[] = [];
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id' },
    topologySource: catalog,
    fenceWaitMillis: FENCE_WAIT,
    replicas: { readFrom: 'replica', readTimeoutMillis: 1000, lagCheckIntervalMillis: 250, checkTimeoutMillis: 1000 },
    onRoute: (event) => routes.push(event),
    onPoolError: () => undefined,
  });
  const db = new Kysely<DB>({ dialect });
  open.push(db);
  await until('every replica serving', () => dialect.replicaStatus().length === 2 && dialect.replicaStatus().every((s) => s.eligible));
  return { db, dialect, routes };
}

/** What a slot move does at its cutover: shard `index` requires the next version, and the catalog publishes it. */
async function moveFenceUp(index: number): Promise<number> {
  const latest = (await catalog.latest())!;
  const next = createTopology({ shards: latest.shards.map((s) => ({ id: s.id, primary: s.primary.url, replicas: s.replicas.map((r) => r.url) })), version: latest.version + 1 });
  await f.pools[index]!.query('update kysely_scale.shard_guard set required_version = $1', [next.version]);
  await catalog.publish(next, 'fence test');
  return next.version;
}

/** `promise`, or a failure once `millis` passed (the old code waited for a frozen server forever). */
function within<T>(millis: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${millis} ms`)), millis);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

test('a refused statement runs again on the reloaded topology although the connection holds a client of a frozen replica', async () => {
  const { db, dialect, routes } = await connect();
  const id = userOn(0);
  let thaw: (() => void) | undefined;
  try {
    const figures = await db.connection().execute(async (conn) => {
      expect(await conn.selectFrom('users').select('name').where('id', '=', id).executeTakeFirst()).toEqual({ name: `user ${id}` });
      expect(routes.at(-1)!.servers.map((s) => s.role)).toEqual(['replica']);
      thaw = freeze(f.cluster.shards[0]!.replicas[0]!);
      const version = await moveFenceUp(0);
      const started = performance.now();
      const updated = await within(4 * FENCE_WAIT, 'the retried update', conn.updateTable('users').set({ score: 5 }).where('id', '=', id).executeTakeFirst());
      expect(updated.numUpdatedRows).toBe(1n);
      // Refused once by shard0's guard (KS001), then run again on its primary.
      expect(routes.slice(-2).map((r) => [r.servers.map((s) => `${s.shardId} ${s.role}`), (r.error as { code?: unknown } | undefined)?.code])).toEqual([
        [['shard0 primary'], 'KS001'],
        [['shard0 primary'], undefined],
      ]);
      expect(dialect.topology.version).toBe(version);
      return { retriedUpdateMillis: Math.round(performance.now() - started) };
    });
    console.log(JSON.stringify(figures));
    // One catch-up and one re-tag on a live primary: well below the deadline of either.
    expect(figures.retriedUpdateMillis).toBeLessThan(FENCE_WAIT);
    expect((await f.pools[0]!.query('select score from users where id = $1', [id])).rows).toEqual([{ score: 5 }]);
  } finally {
    thaw?.();
  }
}, 60_000);

test('a frozen primary the connection holds fails the retry within fenceWaitMillis with E_STALE_TOPOLOGY naming it, and the connection is released', async () => {
  const { db } = await connect();
  const id = userOn(0);
  const before = (await f.pools[0]!.query<{ score: number }>('select score from users where id = $1', [id])).rows[0]!.score;
  let thaw: (() => void) | undefined;
  try {
    const outcome = await db.connection().execute(async (conn) => {
      // Raw SQL on shard1: session state lives on its primary, so the connection keeps that client and must re-tag it.
      await sql`select set_config('app.note', 'held', false)`.execute(conn.withPlugin(withShard('shard1')));
      thaw = freeze(f.cluster.shards[1]!.primary);
      await moveFenceUp(0);
      const started = performance.now();
      const error = await within(4 * FENCE_WAIT, 'the retried update', conn.updateTable('users').set({ score: 6 }).where('id', '=', id).executeTakeFirst()).then(
        () => undefined,
        (e: unknown) => e,
      );
      return { error, millis: performance.now() - started };
    });
    console.log(JSON.stringify({ failedRetryMillis: Math.round(outcome.millis) }));
    expect(outcome.error).toBeInstanceOf(StaleTopologyError);
    const error = outcome.error as StaleTopologyError;
    expect(error.code).toBe(ErrorCodes.STALE_TOPOLOGY);
    expect(error.message).toContain(`the primary of shard "shard1" (${topology.shardById('shard1')!.primary.redactedUrl}) did not answer within ${FENCE_WAIT} ms`);
    expect(outcome.millis).toBeGreaterThanOrEqual(FENCE_WAIT - 10);
    expect(outcome.millis).toBeLessThan(3 * FENCE_WAIT);
    // Nothing was written.
    expect((await f.pools[0]!.query('select score from users where id = $1', [id])).rows).toEqual([{ score: before }]);
  } finally {
    thaw?.();
  }
}, 60_000);
