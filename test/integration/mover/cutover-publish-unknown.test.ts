/**
 * A cutover whose publish's outcome is unknown (PublishOutcomeUnknownError: the answer never came
 * and the catalog could not be asked). Before, the mover reverted the cutover whenever it could
 * read the catalog afterwards (target hiding the slots again, required versions back), and the held
 * publish could commit later: routers at the new version then read 0 rows and updated 0 rows on
 * the new owner. Now the move stops with E_MOVE_FAILED, the shards stay switched (both require the
 * new version, so older routers are refused with a coded, retryable error; the source's fence is
 * permanent, so it does not lift after fenceTimeoutMillis), and `resume` / `abort` settle the
 * version first: committed → the cutover is finished; never committed → published again.
 */
import type { TestCluster } from '../../../src/testing';
import type { Topology } from '../../../src/cluster/topology';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { verifyShards, type VerifyResult } from '../../../src/admin/mover/shard-verify';
import { PublishOutcomeUnknownError } from '../../../src/admin';
import { ErrorCodes } from '../../../src/kernel/errors';
import { freeze, until } from '../replication/replication-fault-fixture';
import { TABLES, type MoverFixture } from './mover-fixture';
import type { HeldPublishProxy } from './held-publish-proxy';
import { startPublishHeldFixture, type GuardState, type PublishHeldFixture } from './publish-held-fixture';

let x: PublishHeldFixture;
let f: MoverFixture;
let catalogCluster: TestCluster;
let catalogUrl: string;
let proxy: HeldPublishProxy;

beforeAll(async () => {
  x = await startPublishHeldFixture('cutover_unknown', 2);
  ({ f, catalogCluster, catalogUrl, proxy } = x);
}, 120_000);

afterAll(() => x?.close());

const latest = (): Promise<Topology> => x.latest();
const plan = (start: Topology): ReturnType<PublishHeldFixture['plan']> => x.plan(start);
const guard = (shard: string, slots: readonly number[]): Promise<GuardState> => x.guard(shard, slots);
const routed = (shard: string, version: number, sql: string, values: unknown[]): Promise<string> => x.routed(shard, version, sql, values);

async function expectSameRows(before: VerifyResult): Promise<void> {
  const after = await verifyShards({ catalog: catalogUrl });
  expect(after).toMatchObject({ ok: true, misplaced: [] });
  for (const table of Object.keys(TABLES)) expect(after.slots[table]).toEqual(before.slots[table]);
  for (const pool of f.pools) {
    expect((await pool.query('select count(*)::int as n from kysely_scale.slot_move')).rows[0].n).toBe(0);
    expect((await pool.query('select hidden from kysely_scale.shard_guard')).rows[0].hidden).toBeNull();
  }
  const users = await f.rowsOf('users');
  expect(users).toHaveLength(300);
  expect(new Set(users.map((u) => u.key)).size).toBe(300);
}

/** What must hold while the version is unsettled: the shards switched, nothing reverted or cleaned, older routers refused. */
async function expectSwitched(p: ReturnType<typeof plan>, old: number, version: number): Promise<void> {
  expect(await guard(p.to, p.slots)).toMatchObject({ required: version, hidesBatch: false });
  expect(await guard(p.from, p.slots)).toMatchObject({ required: version, hidesBatch: true, fence: 'infinity' });
  // Not cleaned: the source still holds the rows (hidden).
  expect((await f.pools[Number(p.from.replace('shard', ''))]!.query('select count(*)::int as n from users where id = $1', [p.user])).rows[0].n).toBe(1);
  // A router at the old version: refused on both shards (KS001: reload and retry), never wrong rows.
  for (const shard of [p.from, p.to]) {
    expect(await routed(shard, old, 'select id from users where id = $1', [p.user])).toBe('error KS001');
    expect(await routed(shard, old, 'update users set score = score + 1 where id = $1', [p.user])).toBe('error KS001');
  }
  // A router at the new version (should it commit): the new owner serves the row.
  expect(await routed(p.to, version, 'select id from users where id = $1', [p.user])).toBe('1 row(s)');
}

/**
 * Moves 64 slots with the cutover's publish held by the proxy and its outcome check refused: the
 * move must stop open (E_MOVE_FAILED, outcome unknown) with the shards switched, nothing reverted.
 */
async function moveWithPublishHeld(): Promise<{ before: VerifyResult; start: Topology; p: ReturnType<typeof plan>; version: number; result: MoveResult }> {
  const before = await verifyShards({ catalog: catalogUrl, tables: TABLES });
  expect(before.ok).toBe(true);
  const start = await latest();
  const p = plan(start);
  const version = start.version + 1;
  const result = await moveSlots({
    catalog: proxy.via(catalogUrl),
    tables: TABLES,
    slots: `${p.slots[0]}-${p.slots[63]}`,
    to: p.to,
    hook: (_batch, at) => {
      if (at === 'switched') proxy.arm('in exclusive mode', 'publish check');
    },
  });
  expect(result).toMatchObject({ ok: false, status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { outcomeUnknown: true, version } } });
  await expectSwitched(p, start.version, version);
  return { before, start, p, version, result };
}

test('publish held, its outcome check refused while the catalog stays readable: the move stops without reverting; the held publish commits; resume finishes the move', async () => {
  const { before, start, p, version, result } = await moveWithPublishHeld();
  expect(proxy.holding).toBe(true);
  expect(proxy.refused).toBeGreaterThan(0);
  expect(result.error!.message).toContain('Resume (or abort) once the catalog answers');
  // The catalog was readable all along: the old code read version < v here and reverted.
  expect((await latest()).version).toBe(start.version);
  // The held publish reaches the catalog and commits.
  await proxy.release(true);
  await until(`version ${version} committed`, async () => (await latest()).version === version, 10_000);
  // Before resume: routers at the new version read and write the moved rows on the new owner.
  expect(await routed(p.to, version, 'select id from users where id = $1', [p.user])).toBe('1 row(s)');
  const resumed = await resumeMove({ catalog: catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed.status).toBe('done');
  const end = await latest();
  expect(end.version).toBe(version);
  expect(p.slots.every((s) => end.shardForSlot(s).id === p.to)).toBe(true);
  await expectSameRows(before);
}, 90_000);

test('publish held and then dropped (it never commits): abort settles by publishing the same topology as that version, and finishes the batch', async () => {
  const { before, start, p, version } = await moveWithPublishHeld();
  await proxy.release(false);
  // Nothing commits: the catalog stays at the old version.
  expect((await latest()).version).toBe(start.version);
  const aborted = await abortMove({ catalog: catalogUrl });
  expect(aborted.error).toBeNull();
  // Once it may be published the batch is treated as a published one: finished, not rolled back.
  expect(aborted).toMatchObject({ status: 'aborted', completed: 1, rolledBack: 0, versions: [version] });
  const end = await latest();
  expect(end.version).toBe(version);
  expect(p.slots.every((s) => end.shardForSlot(s).id === p.to)).toBe(true);
  await expectSameRows(before);
}, 90_000);

test('publish held and then dropped (it never commits): resume settles by publishing the same topology as that version again, and finishes the move', async () => {
  const { before, start, p, version } = await moveWithPublishHeld();
  await proxy.release(false);
  expect((await latest()).version).toBe(start.version);
  const resumed = await resumeMove({ catalog: catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed).toMatchObject({ status: 'done', versions: [version] });
  const end = await latest();
  expect(p.slots.every((s) => end.shardForSlot(s).id === p.to)).toBe(true);
  await expectSameRows(before);
}, 90_000);

test('catalog frozen (SIGSTOP) during the publish: E_MOVE_FAILED, no revert, the fence outlives fenceTimeoutMillis, stale routers refused; after SIGCONT the held publish commits and resume finishes', async () => {
  const before = await verifyShards({ catalog: catalogUrl, tables: TABLES });
  const start = await latest();
  const p = plan(start);
  const version = start.version + 1;
  let thaw: (() => void) | undefined;
  let frozenAt = 0;
  try {
    const result = await moveSlots({
      catalog: catalogUrl,
      tables: TABLES,
      slots: `${p.slots[0]}-${p.slots[63]}`,
      to: p.to,
      tuning: { fenceTimeoutMillis: 1000 },
      hook: (_batch, at) => {
        if (at === 'publishing') {
          thaw = freeze(catalogCluster.shards[0]!.primary);
          frozenAt = performance.now();
        }
      },
    });
    const stoppedAfter = performance.now() - frozenAt;
    console.log(JSON.stringify({ frozenCatalogMoveStoppedAfterMillis: Math.round(stoppedAfter), error: result.error?.message }));
    expect(result).toMatchObject({ status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { outcomeUnknown: true, version } } });
    expect(result.error!.message).toContain(`did not confirm the publish of topology version ${version}`);
    // Well past the fence's 1 s: it was made permanent by the switch, before the publish.
    expect(stoppedAfter).toBeGreaterThan(1000);
    await expectSwitched(p, start.version, version);
  } finally {
    thaw?.();
  }
  const committedAfter = await until(`version ${version} committed after SIGCONT`, async () => (await latest()).version === version, 10_000);
  const resumed = await resumeMove({ catalog: catalogUrl });
  console.log(JSON.stringify({ committedAfterThawMillis: Math.round(committedAfter), resumeMillis: resumed.durationMillis }));
  expect(resumed.error).toBeNull();
  expect(resumed.status).toBe('done');
  const end = await latest();
  expect(p.slots.every((s) => end.shardForSlot(s).id === p.to)).toBe(true);
  await expectSameRows(before);
}, 90_000);

test('PublishOutcomeUnknownError is exported from the admin entry point', () => {
  expect(PublishOutcomeUnknownError.prototype).toBeInstanceOf(Error);
});
