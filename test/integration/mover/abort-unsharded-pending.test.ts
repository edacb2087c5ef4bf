/**
 * `abort` of a drain whose unsharded publish was left pending (held by the catalog proxy, never
 * committed: its outcome unknown) while the step's target is stopped, then `abort` again once the
 * target is back. The first abort leaves the step and must keep the old holder requiring the
 * step's version; the second publishes that pending version and finishes the step (the new holder
 * may have taken writes). Before (review 81, H1), the first abort lowered the old holder's
 * required version, so once the second had published the new holder and cleaned up, a router still
 * at the old version wrote to the old holder (acknowledged, lost) and read no rows there instead
 * of KS001.
 */
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { ErrorCodes } from '../../../src/kernel/errors';
import { drainWithUnshardedPublishHeld, startPublishHeldFixture, type PublishHeldFixture } from './publish-held-fixture';
import { SHARED_NOTES } from './unsharded-fixture';

let x: PublishHeldFixture | undefined;
afterAll(() => x?.close());

test('a pending unsharded publish, its target stopped: abort keeps the old holder refusing the old version; abort again once the target is back publishes the new holder, and the old one still refuses a stale router', async () => {
  x = await startPublishHeldFixture('abort_unsharded_pending', 2, { unsharded: true, slotCount: 32 });
  const fx = x;
  const drained = await drainWithUnshardedPublishHeld(fx);
  await fx.proxy.release(false); // the held publish never commits
  expect(drained).toMatchObject({ ok: false, status: 'open', error: { context: { outcomeUnknown: true } } });
  const old = (await fx.latest()).version;
  expect((await fx.guard('shard0', [])).required).toBe(old + 1);

  await fx.f.cluster.shards[1]!.primary.stop();
  const first = await abortMove({ catalog: fx.catalogUrl, tuning: { statementTimeoutMillis: 2000 } });
  // Left as it is: the old holder still requires the pending version, so routers at `old` are refused there.
  expect((await fx.guard('shard0', [])).required).toBe(old + 1);
  expect(await fx.routed('shard0', old, `insert into notes (author, body) values ('stale', 9)`, [])).toBe('error KS001');
  expect(first).toMatchObject({ ok: false, status: 'open', unsharded: { phase: 'copied', left: ['shard1'] }, error: { code: ErrorCodes.MOVE_FAILED, context: { reason: 'abort-unfinished', shards: ['shard1'] } } });
  expect(await resumeMove({ catalog: fx.catalogUrl, tuning: { statementTimeoutMillis: 2000 } })).toMatchObject({ ok: false, error: { context: { reason: 'abort-unfinished', shards: ['shard1'] } } });

  await fx.f.cluster.shards[1]!.primary.start();
  // The pending version may have committed as far as anyone knows: the abort publishes it and finishes the step.
  const second = await abortMove({ catalog: fx.catalogUrl, tuning: { cleanupDelayMillis: 0 } });
  expect(second).toMatchObject({ ok: true, status: 'aborted', unsharded: { phase: 'cleaned', holderMoved: true }, error: null });
  const end = await fx.latest();
  expect({ version: end.version, holder: end.unshardedShardId }).toEqual({ version: old + 1, holder: 'shard1' });
  // A router still at `old` is refused by the old holder, its write and its read; the new holder serves the notes.
  expect((await fx.guard('shard0', [])).required).toBe(old + 1);
  expect(await fx.routed('shard0', old, `insert into notes (author, body) values ('stale', 9)`, [])).toBe('error KS001');
  expect(await fx.routed('shard0', old, 'select id from notes', [])).toBe('error KS001');
  expect(await fx.routed('shard1', old + 1, 'select id from notes', [])).toBe(`${SHARED_NOTES} row(s)`);
  expect((await fx.f.pools[0]!.query<{ n: number }>('select count(*)::int as n from notes')).rows[0]!.n).toBe(0);
}, 180_000);
