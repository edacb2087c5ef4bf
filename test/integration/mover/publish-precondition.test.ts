/**
 * A mover's publish commits only while no other command has saved its move since the mover's last
 * save (review 61, H1). Before, a mover that lost its operator lock unnoticed could publish after
 * an abort had claimed the move and rolled the batch back: the catalog then named a target whose
 * copies the abort had deleted, and routers read 0 rows there. The catalog, the move store and a
 * loopback proxy holding the publish's bytes are real; each test checks the catalog directly.
 */
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { PublishOutcomeUnknownError } from '../../../src/admin';
import { CatalogPool, catalogDeadlines } from '../../../src/admin/catalog-connections';
import { MoveStore, isRecordChanged } from '../../../src/admin/mover/move-store';
import type { MoveRecord } from '../../../src/admin/mover/move-record';
import { ErrorCodes } from '../../../src/kernel/errors';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';
import { startHeldPublishProxy, type HeldPublishProxy } from './held-publish-proxy';

const SCHEMA = 'kysely_scale';
const TABLES = [{ name: 'users', keyColumn: 'id' }];
const BATCH = { index: 0, source: 'shard0', target: 'shard1', slots: [1, 2, 3] };
const PUBLISH_CHECK = 'kysely-scale catalog publish check';

let cluster: TestCluster;
let catalogUrl: string;
let proxy: HeldPublishProxy;
let storePool: CatalogPool;
let direct: ReturnType<typeof directPool>;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = (await cluster.createDatabase('publish_precondition')) as [TestShardUrls];
  catalogUrl = shard.primaryUrl;
  proxy = await startHeldPublishProxy(Number(new URL(catalogUrl).port));
  storePool = new CatalogPool(catalogUrl, catalogDeadlines({}), 'store test');
  direct = directPool({ connectionString: catalogUrl, max: 3 });
  const catalog = new TopologyCatalog({ url: catalogUrl });
  await catalog.install();
  await catalog.publish(createTopology({ shards: [0, 1].map((i) => ({ id: `shard${i}`, primary: `postgres://app@127.0.0.1:1/s${i}` })) }), 'init');
  await catalog.close();
  await new MoveStore(storePool, SCHEMA).install();
}, 60_000);

afterEach(async () => {
  await proxy.release(false);
  await direct.query(`drop trigger if exists slow on ${SCHEMA}.topology`);
  await direct.query(`update ${SCHEMA}.move set status = 'aborted' where status = 'open'`);
});

afterAll(async () => {
  await direct?.end();
  await storePool?.end();
  await proxy?.close();
  await cluster?.stop();
});

async function latest(): Promise<Topology> {
  const reader = new TopologyCatalog({ url: catalogUrl });
  try {
    return (await reader.latest())!;
  } finally {
    await reader.close();
  }
}

/** The next version: the latest with slot 1 on shard1. */
async function nextVersion(): Promise<Topology> {
  const now = await latest();
  return now.withSlotsMoved([1], now.shardForSlot(1).id === 'shard0' ? 'shard1' : 'shard0', now.version + 1);
}

/** A catalog whose connections go through the proxy, with 1 s deadlines (a held publish is given up on quickly). */
function proxiedCatalog(): TopologyCatalog {
  return new TopologyCatalog({ url: proxy.via(catalogUrl), statementTimeoutMillis: 1000, connectionTimeoutMillis: 1000 });
}

/** Publishes `next` with its bytes held by the proxy and its outcome check refused: unknown. */
async function publishHeld(catalog: TopologyCatalog, next: Topology, store: MoveStore, move: MoveRecord): Promise<void> {
  proxy.arm('in exclusive mode', PUBLISH_CHECK);
  const failure = await catalog.publish(next, 'held', store.publishPrecondition(move)).catch((error: unknown) => error);
  expect(failure).toBeInstanceOf(PublishOutcomeUnknownError);
  expect(proxy.holding).toBe(true);
}

/** Delivers the held publish and waits until its server process (one of the catalog's sessions, open since before the release) has run it and ended. */
async function deliverHeld(): Promise<void> {
  const sessions = `select array_agg(pid) as pids from pg_stat_activity where application_name = 'kysely-scale catalog'`;
  const { rows } = await direct.query<{ pids: number[] | null }>(sessions);
  const held = rows[0]!.pids ?? [];
  expect(held.length).toBeGreaterThan(0);
  await proxy.release(true);
  await until(
    'the held publish ran and its process ended',
    async () => (await direct.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where pid = any($1)', [held])).rows[0]!.n === 0,
    10_000,
  );
}

test('a publish after another command claimed the move is refused (record-changed), nothing published', async () => {
  const mover = new MoveStore(storePool, SCHEMA);
  const move = await mover.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
  const other = new MoveStore(storePool, SCHEMA);
  await other.claim((await other.get(move.id))!);
  const before = await latest();
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    const refused = await catalog.publish(await nextVersion(), 'stale mover', mover.publishPrecondition(move)).catch((error: unknown) => error);
    expect(isRecordChanged(refused)).toBe(true);
    expect(refused).toMatchObject({ code: ErrorCodes.MOVE_FAILED, message: expect.stringContaining('this publish was refused, nothing was published') });
    expect((await latest()).version).toBe(before.version);
    // The command that claimed it publishes under its own claim.
    await catalog.publish(await nextVersion(), 'claimer', other.publishPrecondition((await other.get(move.id))!));
    expect((await latest()).version).toBe(before.version + 1);
  } finally {
    await catalog.close();
  }
}, 30_000);

/**
 * A mover's publish held on the wire (outcome unknown) while `meanwhile` runs, then delivered:
 * the catalog's latest version afterwards, less the one before.
 */
async function heldPublish(meanwhile: (mover: MoveStore, move: MoveRecord, version: number) => Promise<void>): Promise<number> {
  const mover = new MoveStore(storePool, SCHEMA);
  const move = await mover.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
  const before = await latest();
  const catalog = proxiedCatalog();
  try {
    await publishHeld(catalog, await nextVersion(), mover, move);
    await meanwhile(mover, move, before.version + 1);
    await deliverHeld();
    return (await latest()).version - before.version;
  } finally {
    await catalog.close();
  }
}

test('a publish held on the wire while another command claims the move never commits once delivered', async () => {
  const published = await heldPublish(async (_mover, move) => {
    const other = new MoveStore(storePool, SCHEMA);
    await other.claim((await other.get(move.id))!);
  });
  // The old code's publish committed here, over the claim.
  expect(published).toBe(0);
}, 30_000);

test('a publish held on the wire while its own command saves the move (the pending mark) still commits once delivered', async () => {
  const published = await heldPublish(async (mover, move, version) => {
    move.batches[0]!.publishPending = version;
    await mover.save(move);
  });
  expect(published).toBe(1);
}, 30_000);

/** Whether a statement containing `needle` waits for a lock. */
const waitingOnLock = async (needle: string) =>
  (await direct.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like $1`, [`%${needle}%`])).rows[0]!.n > 0;

test('a claim not yet committed when the publish checks: the publish waits for it, re-checks the new row version and is refused (found sound by review 62)', async () => {
  const mover = new MoveStore(storePool, SCHEMA);
  const move = await mover.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
  const claimer = await direct.connect();
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    await claimer.query('begin');
    await claimer.query(`update ${SCHEMA}.move set revision = revision + 1, writer = 'other', writer_seq = 1 where id = $1`, [move.id]);
    const before = (await latest()).version;
    const publishing = catalog.publish(await nextVersion(), 'stale', mover.publishPrecondition(move)).catch((e: unknown) => e);
    await until('the publish waits on the move row', () => waitingOnLock('for share'), 10_000);
    await claimer.query('commit');
    expect(isRecordChanged(await publishing)).toBe(true);
    expect((await latest()).version).toBe(before);
  } finally {
    claimer.release();
    await catalog.close();
  }
}, 30_000);

test('a claim sent while the publish holds the move row (for share): it returns only after the publish committed, so a version absent after a claim never commits (found sound by review 62)', async () => {
  const mover = new MoveStore(storePool, SCHEMA);
  const move = await mover.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
  // Holds the publish's transaction open after its check (a slow catalog), to send the claim meanwhile.
  await direct.query(`create or replace function ${SCHEMA}.slow() returns trigger language plpgsql as $$ begin perform pg_sleep(1.5); return null; end $$`);
  await direct.query(`create trigger slow after insert on ${SCHEMA}.topology for each row execute function ${SCHEMA}.slow()`);
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    const target = await nextVersion();
    const publishing = catalog.publish(target, 'mover', mover.publishPrecondition(move));
    await until('the publish sleeps in its trigger', async () => (await direct.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where query like '%in exclusive mode%' and wait_event = 'PgSleep'`)).rows[0]!.n > 0, 10_000);
    const other = new MoveStore(storePool, SCHEMA);
    const claiming = other.claim((await other.get(move.id))!);
    await until('the claim waits on the row', () => waitingOnLock('update'), 10_000);
    await publishing;
    await claiming;
    const { rows } = await direct.query<{ v: number }>(`select max(version)::int as v from ${SCHEMA}.topology`);
    expect(rows[0]!.v).toBe(target.version);
  } finally {
    await catalog.close();
  }
}, 30_000);

test('a refused publish whose answer never came is reported as refused (record-changed), not as a retryable timeout', async () => {
  const mover = new MoveStore(storePool, SCHEMA);
  const move = await mover.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
  const other = new MoveStore(storePool, SCHEMA);
  await other.claim((await other.get(move.id))!);
  const before = await latest();
  const catalog = proxiedCatalog();
  try {
    // The publish's bytes are held (its answer never comes); its outcome check gets through.
    proxy.arm('in exclusive mode', 'no such application');
    const failure = await catalog.publish(await nextVersion(), 'stale mover', mover.publishPrecondition(move)).catch((error: unknown) => error);
    expect(isRecordChanged(failure)).toBe(true);
    expect((await latest()).version).toBe(before.version);
  } finally {
    await catalog.close();
  }
}, 30_000);
