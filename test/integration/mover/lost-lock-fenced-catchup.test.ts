/**
 * The operator lock lost while the cutover's fenced catch-up pass pipes a key: the pass stops at
 * once (its stop signal), dropping the source's session, and the mover backs out of the cutover
 * (it takes the lock again). The back-out opens its sessions anew, so it lowers the fence at once
 * and writers of the moving slot go through again; before, it reverted on the dropped session,
 * failed, and left the fence up for the rest of its time (review 80, M1). Resume then finishes.
 */
import { TABLES, type MoverFixture } from './mover-fixture';
import { closeSeededMover, type SeededMover } from './seeded-mover';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { holdingCopies, loseLockWhileHeld, MANY_ROWS, MANY_ROWS_KEY, startManyRowsKey } from './held-copy';

const KEY = MANY_ROWS_KEY;
const KEY_ROWS = MANY_ROWS;
const HOLD_LOCK = 4545;

let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
let from = 0;
let to = 1;
let slot = 0;
beforeAll(async () => {
  ({ f, catalogPool, from, to, slot } = await startManyRowsKey('lost_lock_fenced_catchup', HOLD_LOCK));
}, 60_000);
afterAll(() => closeSeededMover({ f, catalogPool }));

test('a lock lost during the fenced catch-up pass: the pass stops, the back-out lowers the fence at once; resume finishes', async () => {
  let stopped: Promise<number> | undefined;
  const points: string[] = [];
  const moved = await holdingCopies(f.shards[to]!.primaryUrl, HOLD_LOCK, (release) =>
    moveSlots({
      catalog: f.catalogUrl,
      slots: String(slot),
      to: f.shards[to]!.id,
      tables: TABLES,
      hook: async (_b, at) => {
        points.push(at);
        // One change (lag 1 <= FENCED_LAG: no pass before the fence): the fenced pass pipes the whole key.
        if (at === 'caught-up') await f.pools[from]!.query(`update orders set amount = -1 where user_id = ${KEY} and id = 1000`);
        if (at !== 'fenced') return;
        const source = { pool: f.pools[from]!, url: f.shards[from]!.primaryUrl, copy: 'copy (select * from %orders% where %) to stdout' };
        stopped = loseLockWhileHeld({ catalogPool, source, target: f.pools[to]!, release });
        stopped.catch(() => undefined);
      },
    }),
  );
  expect(await stopped!).toBeLessThan(3000);
  const { rows } = await f.pools[from]!.query<{ fence: string | null; ms: number | null }>(
    `select max(fenced_until)::text as fence, (extract(epoch from max(fenced_until) - clock_timestamp()) * 1000)::int as ms from kysely_scale.slot_move where fenced_until is not null`,
  );
  const write = await f.pools[from]!.query(`update orders set amount = 5 where user_id = ${KEY} and id = 5`).then(
    () => 'ok',
    (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
  );
  expect(moved.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'lock-lost' } });
  expect(points).toContain('fenced');
  // The back-out should have lowered the fence (writers of the moving slot go through again).
  expect(rows[0]!.fence).toBeNull();
  expect(write).toBe('ok');

  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
}, 120_000);
