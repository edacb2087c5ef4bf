/**
 * A move whose operator lock is lost while its catch-up pass pipes a key with many rows stops the
 * pass at once (the batch's stop signal, given to every catch-up pass): the source's COPY ends,
 * the move fails with reason lock-lost, the pass's transactions roll back (the target keeps the
 * batch's copy of the key, the source the change-log entry), and `resume` finishes the move.
 * Before, the pass piped the key to its last row and committed it.
 *
 * The target's copy of the key is held at the row the test changed ({@link holdTriggerSql}).
 */
import { TABLES, type MoverFixture } from './mover-fixture';
import { closeSeededMover, type SeededMover } from './seeded-mover';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { holdingCopies, loseLockWhileHeld, MANY_ROWS, MANY_ROWS_KEY, startManyRowsKey } from './held-copy';

const KEY = MANY_ROWS_KEY;
const KEY_ROWS = MANY_ROWS;
const HOLD_LOCK = 4444;

let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
let from = 0;
let to = 1;
let slot = 0;
beforeAll(async () => {
  ({ f, catalogPool, from, to, slot } = await startManyRowsKey('lost_lock_catchup_move', HOLD_LOCK));
}, 60_000);
afterAll(() => closeSeededMover({ f, catalogPool }));

async function one<T>(i: number, sql: string): Promise<T> {
  return (await f.pools[i]!.query(sql)).rows[0] as T;
}

test(`a move whose lock is lost while its catch-up pipes a key of ${KEY_ROWS} rows stops the pass at once; resume finishes`, async () => {
  let stopped: Promise<number> | undefined;
  const moved = await holdingCopies(f.shards[to]!.primaryUrl, HOLD_LOCK, (release) =>
    moveSlots({
      catalog: f.catalogUrl,
      slots: String(slot),
      to: f.shards[to]!.id,
      tables: TABLES,
      hook: async (_b, at) => {
        if (at !== 'copied') return;
        // One change of the key, captured: the catch-up pass pipes the whole key again.
        await f.pools[from]!.query(`update orders set amount = -1 where user_id = ${KEY} and id = 1000`);
        const source = { pool: f.pools[from]!, url: f.shards[from]!.primaryUrl, copy: 'copy (select * from %orders% where %) to stdout' };
        stopped = loseLockWhileHeld({ catalogPool, source, target: f.pools[to]!, release });
        stopped.catch(() => undefined); // awaited below
      },
    }),
  );
  const stopMillis = await stopped!;
  console.log(`catch-up pass of a move stopped ${stopMillis} ms after the lock session was ended`);
  expect(stopMillis).toBeLessThan(3000);
  expect(moved.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'lock-lost' } });
  // Rolled back: the target keeps the batch's copy of the key (not the delete, not a part of the pass), the source its entry.
  expect(await one(to, `select count(*)::int as n, count(*) filter (where amount = -1)::int as changed from orders where user_id = ${KEY}`)).toEqual({ n: KEY_ROWS, changed: 0 });
  expect(await one(from, 'select count(*)::int as n from kysely_scale.change_log')).toEqual({ n: 1 });

  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed.status).toBe('done');
  expect(await one(to, `select count(*)::int as n, count(*) filter (where amount = -1)::int as changed from orders where user_id = ${KEY}`)).toEqual({ n: KEY_ROWS, changed: 1 });
}, 120_000);
