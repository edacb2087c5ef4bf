/**
 * `abort` of a drain whose unsharded step is switched (the mover killed at `unsharded-switched`:
 * the old holder requires the step's version, not published yet) while the step's target is
 * stopped. The abort leaves the step as it is, and must leave the old holder requiring that
 * version: before (review 81, H1) it lowered it to the catalog's latest anyway, nothing raised it
 * again, and `resume` (not refused: the left step was not recorded) then published the new holder
 * and cleaned up, after which a router still at the old version wrote to the old holder (the write
 * acknowledged and lost) and read no rows there instead of KS001. Now the left step is recorded on
 * the move: `status` names it, `resume` is refused, and `abort` again rolls it back.
 */
import { abortMove, moveHistory, resumeMove } from '../../../src/admin/mover/move-control';
import { ErrorCodes } from '../../../src/kernel/errors';
import { appStatement } from './app-statement';
import { latestTopology } from './served-rows';
import { crashUnshardedDrainAt, notesByShard, SHARED_NOTES, startUnshardedFixture } from './unsharded-fixture';
import type { MoverFixture } from './mover-fixture';

let f: MoverFixture;
afterAll(() => f?.close());

/** Shard `i`'s required version. */
async function required(i: number): Promise<number> {
  return (await f.pools[i]!.query<{ v: number }>('select required_version as v from kysely_scale.shard_guard')).rows[0]!.v;
}

test('a switched unsharded step whose target is stopped: abort leaves it, the old holder still refuses routers of the old version, resume is refused; abort again once the target is back rolls it back', async () => {
  f = await startUnshardedFixture('abort_unsharded_left', 2);
  await f.seed(await f.init(2, 32), 0, 60);
  await crashUnshardedDrainAt(f.catalogUrl, 'unsharded-switched');
  const v = (await latestTopology(f.catalogUrl)).version; // every batch published: the step's version is v + 1
  expect(await required(0)).toBe(v + 1);
  expect(await appStatement(f.appUrl(0), v, 'select id from notes', [])).toBe('error KS001');

  await f.cluster.shards[1]!.primary.stop();
  const aborted = await abortMove({ catalog: f.catalogUrl, tuning: { statementTimeoutMillis: 2000 } });
  // The old holder still requires the step's version: a router at v is refused there, its write too.
  expect(await required(0)).toBe(v + 1);
  expect(await appStatement(f.appUrl(0), v, `insert into notes (author, body) values ('stale', 9)`, [])).toBe('error KS001');
  expect(aborted).toMatchObject({ ok: false, status: 'open', unsharded: { phase: 'copied', left: ['shard1'] }, error: { code: ErrorCodes.MOVE_FAILED, context: { reason: 'abort-unfinished', shards: ['shard1'], unsharded: 'copied' } } });
  // The move records the left step: status names the shard, resume is refused (the shard still stopped, then back).
  expect((await moveHistory({ catalog: f.catalogUrl, limit: 1 })).moves[0]).toMatchObject({ status: 'open', unsharded: { phase: 'copied', left: ['shard1'] } });
  const refused = { error: { code: ErrorCodes.MOVE_FAILED, context: { reason: 'abort-unfinished', shards: ['shard1'] } } };
  expect(await resumeMove({ catalog: f.catalogUrl, tuning: { statementTimeoutMillis: 2000 } })).toMatchObject(refused);
  await f.cluster.shards[1]!.primary.start();
  const resumed = await resumeMove({ catalog: f.catalogUrl, tuning: { cleanupDelayMillis: 0 } });
  expect(resumed).toMatchObject({ ok: false, ...refused });
  expect(resumed.error!.message).toContain('its unsharded step is left for shards that did not answer');
  expect((await latestTopology(f.catalogUrl)).version).toBe(v);
  expect(await appStatement(f.appUrl(0), v, `insert into notes (author, body) values ('stale', 9)`, [])).toBe('error KS001');

  // Abort again: the step's version was never published, so it is rolled back; shard0 holds the notes again.
  const finished = await abortMove({ catalog: f.catalogUrl, tuning: { cleanupDelayMillis: 0 } });
  expect(finished).toMatchObject({ ok: true, status: 'aborted', rolledBack: 1, unsharded: { phase: 'aborted' }, error: null });
  expect(finished.unsharded!.left).toBeUndefined();
  const latest = await latestTopology(f.catalogUrl);
  expect({ version: latest.version, holder: latest.unshardedShardId ?? 'shard0' }).toEqual({ version: v, holder: 'shard0' });
  expect(await required(0)).toBeLessThanOrEqual(v);
  expect(await appStatement(f.appUrl(0), v, 'select id from notes', [])).toBe(`${SHARED_NOTES} row(s)`);
  expect(await appStatement(f.appUrl(0), v, `insert into notes (author, body) values ('after', 1)`, [])).toBe('1 row(s)');
  const notes = await notesByShard(f.pools);
  expect([...notes.values()].every((copies) => copies.length === 1 && copies[0]![0] === 0)).toBe(true); // the target's copies deleted
  expect(notes.size).toBe(SHARED_NOTES + 1);
  expect((await moveHistory({ catalog: f.catalogUrl, limit: 1 })).moves[0]!.unsharded!.left).toBeUndefined();
}, 120_000);
