/**
 * A drain's unsharded step whose operator lock is lost in the middle of its fenced copy stops the
 * copy at once (the move context's stop signal): the source's COPY ends, the target's transaction
 * rolls back (no row of the tables is left there), the fence is lowered, and the drain fails with
 * reason lock-lost; `resume` then finishes the step. Before, the copy was given no signal and ran
 * to the end of the tables, committing them on the target, with the fence up all along.
 *
 * The target's copy of `notes` is held at one row ({@link holdTriggerSql}); without the signal the
 * source's COPY never ends while it is held.
 */
import { TABLES, type MoverFixture } from './mover-fixture';
import { SHARED_NOTES } from './unsharded-fixture';
import { closeSeededMover, startSeededMover, type SeededMover } from './seeded-mover';
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { holdingCopies, holdTriggerSql, loseLockWhileHeld } from './held-copy';

/** Notes on the holder, beyond the shared ones. */
const EXTRA_NOTES = 50_000;
const HOLD_LOCK = 4242;

let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
beforeAll(async () => {
  ({ f, catalogPool } = await startSeededMover('lost_lock_unsh', { slotCount: 32, users: 20, catalogConnections: 2, unsharded: true }));
  await f.pools[0]!.query(`insert into notes (author, body) select 'extra', n from generate_series(1, ${EXTRA_NOTES}) n`);
  await f.pools[1]!.query(holdTriggerSql('notes', 'new.id = 1000', HOLD_LOCK));
}, 60_000);
afterAll(() => closeSeededMover({ f, catalogPool }));

async function count(i: number, sql: string): Promise<number> {
  return (await f.pools[i]!.query<{ n: number }>(sql)).rows[0]!.n;
}

test('the fenced copy of a drain whose lock is lost mid-copy stops at once, leaves no row on the target and lowers the fence; resume finishes the step', async () => {
  let stopped: Promise<number> | undefined;
  const drained = await holdingCopies(f.shards[1]!.primaryUrl, HOLD_LOCK, (release) =>
    drainShard({
      catalog: f.catalogUrl,
      tables: TABLES,
      shardId: 'shard0',
      tuning: { cleanupDelayMillis: 10, fenceTimeoutMillis: 60_000 },
      hook: (_b, at) => {
        if (at !== 'unsharded-fenced') return;
        const source = { pool: f.pools[0]!, url: f.shards[0]!.primaryUrl, copy: 'copy (select % from only %notes%) to stdout' };
        stopped = loseLockWhileHeld({ catalogPool, source, target: f.pools[1]!, release });
        stopped.catch(() => undefined); // awaited below
      },
    }),
  );
  const stopMillis = await stopped!;
  console.log(`unsharded copy stopped ${stopMillis} ms after the lock session was ended`);
  expect(stopMillis).toBeLessThan(3000);
  expect(drained.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'lock-lost' } });
  expect(drained.unsharded).toMatchObject({ phase: 'fenced', holderMoved: false });
  // Rolled back on the target; the source keeps its rows, its writers no longer fenced.
  expect(await count(1, 'select count(*)::int as n from notes')).toBe(0);
  expect(await count(0, 'select count(*)::int as n from notes')).toBe(SHARED_NOTES + EXTRA_NOTES);
  expect(await count(0, 'select count(*)::int as n from kysely_scale.unsharded_fence where fenced_until > clock_timestamp()')).toBe(0);
  expect(await count(1, `select count(*)::int as n from pg_stat_activity where application_name = 'kysely-scale mover' and datname = current_database()`)).toBe(0);

  const resumed = await resumeMove({ catalog: f.catalogUrl, tuning: { cleanupDelayMillis: 10 } });
  expect(resumed.error).toBeNull();
  expect(resumed.unsharded).toMatchObject({ phase: 'cleaned', target: 'shard1', holderMoved: true });
  expect(await count(1, 'select count(*)::int as n from notes')).toBe(SHARED_NOTES + EXTRA_NOTES);
}, 120_000);
