/**
 * A drain whose unsharded step's publish (the topology recording the tables' new holder) has an
 * unknown outcome (PublishOutcomeUnknownError: its answer never came and the catalog could not be
 * asked). Before, the error left the step `copied` (source switched, fence permanent), and `abort`
 * read the catalog (version absent), lowered the fence, restored the required version and cleared
 * the target's copies: had the held publish committed afterwards, routers would have sent the
 * unsharded tables' reads and writes to the emptied target. Now the drain stops with E_MOVE_FAILED
 * (outcomeUnknown) reverting nothing, and `resume` / `abort` settle the version first: committed →
 * finished; still open → published again as that version, then finished (an abort whose own
 * publish is unknown again stops with nothing reverted).
 */
import { directClient } from '../../support/direct-pool';
import type { Topology } from '../../../src/cluster/topology';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { TOPOLOGY_VERSION_SETTING } from '../../../src/cluster/topology-fence';
import { ErrorCodes } from '../../../src/kernel/errors';
import { until } from '../replication/replication-fault-fixture';
import { TABLES } from './mover-fixture';
import { notesByShard, SHARED_NOTES } from './unsharded-fixture';
import { drainWithUnshardedPublishHeld, startPublishHeldFixture, type PublishHeldFixture } from './publish-held-fixture';

const NOTE_IDS = [...Array(SHARED_NOTES).keys()].map((i) => i + 1);

let current: PublishHeldFixture | undefined;

afterEach(async () => {
  await current?.close();
  current = undefined;
});

/** Each fence row of the unsharded tables on `shard` (its expiry as text). */
async function unshardedFence(x: PublishHeldFixture, shard: number): Promise<string[]> {
  const pool = x.f.pools[shard]!;
  const { rows } = await pool.query(`select to_regclass('kysely_scale.unsharded_fence') is not null as ok`);
  if (rows[0].ok !== true) return [];
  return (await pool.query<{ until: string }>('select fenced_until::text as until from kysely_scale.unsharded_fence')).rows.map((r) => r.until);
}

async function requiredOn(x: PublishHeldFixture, shard: number): Promise<number> {
  return (await x.f.pools[shard]!.query('select required_version as v from kysely_scale.shard_guard')).rows[0].v as number;
}

/** Note ids on `shard`, sorted. */
async function noteIds(x: PublishHeldFixture, shard: number): Promise<number[]> {
  return (await x.f.pools[shard]!.query<{ id: string }>('select id from notes order by id')).rows.map((r) => Number(r.id));
}

/**
 * Drains shard0 (2 shards, 32 slots: one slot batch, then the unsharded step) with the unsharded
 * step's publish held by the proxy and its outcome check refused: the drain must stop open with
 * E_MOVE_FAILED (outcome unknown), nothing reverted: the target keeps its copies, the source its
 * rows, its permanent fence and the new required version; routers at the old version refused.
 */
async function drainWithPublishHeld(name: string): Promise<{ x: PublishHeldFixture; start: Topology; version: number; result: MoveResult }> {
  const fx = await startPublishHeldFixture(name, 2, { unsharded: true, slotCount: 32 });
  current = fx;
  expect((await verifyShards({ catalog: fx.catalogUrl, tables: TABLES })).ok).toBe(true);
  const result = await drainWithUnshardedPublishHeld(fx);
  // The slot batch published the version before the held one.
  const start = await fx.latest();
  const version = start.version + 1;
  expect(result).toMatchObject({ ok: false, status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { outcomeUnknown: true, version } } });
  expect(result.error!.message).toContain('Resume (or abort) once the catalog answers');
  expect(result.unsharded).toMatchObject({ phase: 'copied', version, holderMoved: false });
  expect(fx.proxy.holding).toBe(true);
  expect(fx.proxy.refused).toBeGreaterThan(0);
  expect(start.unshardedShardId).toBeUndefined(); // the catalog is readable and the version absent: the old abort reverted here
  await expectNothingReverted(fx, start.version, version);
  return { x: fx, start, version, result };
}

async function expectNothingReverted(fx: PublishHeldFixture, old: number, version: number): Promise<void> {
  expect(await noteIds(fx, 1)).toEqual(NOTE_IDS); // the target keeps its copies
  expect(await noteIds(fx, 0)).toEqual(NOTE_IDS); // the source is not cleaned
  expect(await unshardedFence(fx, 0)).toEqual(['infinity']);
  expect(await requiredOn(fx, 0)).toBe(version);
  // A router at the old version is refused on the old holder (KS001: reload and retry), reads and writes.
  expect(await fx.routed('shard0', old, 'select id from notes', [])).toBe('error KS001');
  expect(await fx.routed('shard0', old, 'update notes set body = body + 1 where id = 1', [])).toBe('error KS001');
}

/** After the step finished: every note once, on shard1; no fence left; a router of the latest version reads and writes them there. */
async function expectNotesMoved(fx: PublishHeldFixture): Promise<Topology> {
  const end = await fx.latest();
  expect(end.unshardedShardId).toBe('shard1');
  const rows = await notesByShard(fx.f.pools);
  expect([...rows.keys()].sort((a, b) => a - b)).toEqual(NOTE_IDS);
  expect([...rows.values()].every((copies) => copies.length === 1 && copies[0]![0] === 1)).toBe(true);
  expect(await unshardedFence(fx, 0)).toEqual([]);
  expect(await unshardedFence(fx, 1)).toEqual([]);
  const app = directClient({ connectionString: fx.f.appUrl(1) });
  await app.connect();
  try {
    await app.query('select set_config($1, $2, false)', [TOPOLOGY_VERSION_SETTING, String(end.version)]);
    expect((await app.query('select count(*)::int as n from notes')).rows[0].n).toBe(SHARED_NOTES);
    await app.query(`insert into notes (author, body) values ('after', 2)`);
    expect((await app.query('select count(*)::int as n from notes')).rows[0].n).toBe(SHARED_NOTES + 1);
  } finally {
    await app.end();
  }
  const verified = await verifyShards({ catalog: fx.catalogUrl });
  expect(verified).toMatchObject({ ok: true, misplaced: [] });
  expect(await fx.f.rowsOf('users')).toHaveLength(300);
  return end;
}

test('the held publish commits later: nothing was reverted; resume finishes the drain with every note on the new holder', async () => {
  const { x, version } = await drainWithPublishHeld('unsh_unknown_commit');
  await x.proxy.release(true);
  await until(`version ${version} committed`, async () => (await x.latest()).version === version, 10_000);
  // Routers at the new version already read the notes on the new holder.
  expect(await x.routed('shard1', version, 'select id from notes', [])).toBe(`${SHARED_NOTES} row(s)`);
  const resumed = await resumeMove({ catalog: x.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed).toMatchObject({ status: 'done', unsharded: { phase: 'cleaned', holderMoved: true, version } });
  const end = await expectNotesMoved(x);
  expect(end.shards.map((s) => s.id)).toEqual(['shard1']); // drained and removed
}, 120_000);

test('the held publish never commits, then abort: the version is settled by publishing it again, and the step is finished, not rolled back', async () => {
  const { x, start, version } = await drainWithPublishHeld('unsh_unknown_abort');
  await x.proxy.release(false);
  expect((await x.latest()).version).toBe(start.version); // nothing committed
  const aborted = await abortMove({ catalog: x.catalogUrl });
  expect(aborted.error).toBeNull();
  expect(aborted).toMatchObject({ status: 'aborted', rolledBack: 0, versions: [version], unsharded: { phase: 'cleaned', holderMoved: true, version } });
  const end = await expectNotesMoved(x);
  expect(end.version).toBe(version);
  expect(end.shards.map((s) => s.id)).toEqual(['shard0', 'shard1']); // an abort removes no shard
}, 120_000);

test('the held publish never commits, then resume: the same topology is published again as that version, and the drain finishes', async () => {
  const { x, start, version } = await drainWithPublishHeld('unsh_unknown_resume');
  await x.proxy.release(false);
  expect((await x.latest()).version).toBe(start.version);
  const resumed = await resumeMove({ catalog: x.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed).toMatchObject({ status: 'done', versions: [version, version + 1], unsharded: { phase: 'cleaned', holderMoved: true, version } });
  const end = await expectNotesMoved(x);
  expect(end.shards.map((s) => s.id)).toEqual(['shard1']);
}, 120_000);

test('the abort\'s own publish of the version is unknown again: the abort stops with nothing reverted; resume then finishes', async () => {
  const { x, start, version } = await drainWithPublishHeld('unsh_unknown_abort_again');
  await x.proxy.release(false);
  x.proxy.arm('in exclusive mode', 'publish check');
  const stopped = await abortMove({ catalog: x.proxy.via(x.catalogUrl) });
  await x.proxy.release(false);
  expect(stopped).toMatchObject({ ok: false, status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { outcomeUnknown: true, version } } });
  expect((await x.latest()).version).toBe(start.version);
  await expectNothingReverted(x, start.version, version);
  const resumed = await resumeMove({ catalog: x.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed).toMatchObject({ status: 'done', unsharded: { phase: 'cleaned', holderMoved: true, version } });
  await expectNotesMoved(x);
}, 120_000);
