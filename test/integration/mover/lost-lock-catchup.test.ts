/**
 * A catch-up pass piping a key with many rows stops at once when the command's operator lock is
 * lost (the stop signal given to the pass): the source's COPY ends, the pass fails with the
 * signal's reason, both transactions roll back (the target keeps its earlier copy of the key, the
 * source its change-log entry). Before, a pass was given no signal: it piped the key to its last
 * row (at most 1,000 keys per statement, but a key can own any number of rows) and committed it.
 *
 * The target's copy is held at one row ({@link holdTriggerSql}); without the signal the source's
 * COPY never ends while it is held.
 */
import type { Client } from 'pg';
import type { MoverFixture } from './mover-fixture';
import { closeSeededMover, startSeededMover, type SeededMover } from './seeded-mover';
import { catchUpPass } from '../../../src/admin/mover/change-catchup';
import { openShardSession, type ShardSession } from '../../../src/admin/mover/shard-session';
import { shardGuardSql } from '../../../src/admin/mover/shard-guard-sql';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { systemClock } from '../../../src/kernel/clock';
import { holdingCopies, holdTriggerSql, loseLockWhileHeld } from './held-copy';

/** Rows of the key the pass pipes. */
const KEY_ROWS = 50_000;
const HOLD_LOCK = 4343;
const MOVE_ID = 1;
const ORDERS = Object.freeze({ name: 'orders', keyColumn: 'user_id', keyType: 'bigint' });

let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
beforeAll(async () => {
  ({ f, catalogPool } = await startSeededMover('lost_lock_catchup', { slotCount: 32, users: 0, catalogConnections: 2 }));
  await f.pools[0]!.query(shardGuardSql('shard0'));
  await f.pools[0]!.query(`insert into orders (user_id, id, amount) select 7, n, n from generate_series(1, ${KEY_ROWS}) n`);
  // The target's earlier copy of the key (what a pass replaces): 10 rows.
  await f.pools[1]!.query(`insert into orders (user_id, id, amount) select 7, n, 0 from generate_series(1, 10) n`);
  await f.pools[1]!.query(holdTriggerSql('orders', 'new.user_id = 7 and new.id = 1000', HOLD_LOCK));
}, 60_000);
afterAll(() => closeSeededMover({ f, catalogPool }));

beforeEach(async () => {
  await f.pools[0]!.query(`delete from kysely_scale.change_log; insert into kysely_scale.change_log (move_id, tbl, key) values (${MOVE_ID}, 'orders', '7')`);
});

async function targetRowsOfKey(): Promise<{ n: number; amount: string }> {
  return (await f.pools[1]!.query<{ n: number; amount: string }>(`select count(*)::int as n, coalesce(sum(amount), 0)::int::text as amount from orders where user_id = 7`)).rows[0]!;
}

async function changeLogEntries(): Promise<number> {
  return (await f.pools[0]!.query<{ n: number }>('select count(*)::int as n from kysely_scale.change_log')).rows[0]!.n;
}

/** Runs `fn` with a source and a target mover session, closed afterwards. */
async function withSessions<T>(fn: (source: Client, target: Client) => Promise<T>): Promise<T> {
  const sessions: ShardSession[] = [];
  try {
    sessions.push(await openShardSession(f.shards[0]!.primaryUrl), await openShardSession(f.shards[1]!.primaryUrl));
    return await fn(sessions[0]!.client, sessions[1]!.client);
  } finally {
    await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
  }
}

test(`a pass piping a key of ${KEY_ROWS} rows stops at once when the operator lock is lost; nothing of it stays on the target, its entry stays in the change log`, async () => {
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  let stopMillis = Number.NaN;
  try {
    await holdingCopies(f.shards[1]!.primaryUrl, HOLD_LOCK, (release) =>
      catalog.withOperatorLock((lost) =>
        withSessions(async (source, target) => {
          const outcome = catchUpPass(source, target, { moveId: MOVE_ID, tables: [ORDERS], limit: undefined, snapshot: false, clock: systemClock, signal: lost }).then(
            () => 'completed',
            (error: unknown) => error,
          );
          const source0 = { pool: f.pools[0]!, url: f.shards[0]!.primaryUrl, copy: 'copy (select * from %orders% where %) to stdout' };
          stopMillis = await loseLockWhileHeld({ catalogPool, source: source0, target: f.pools[1]!, release });
          expect(lost.aborted).toBe(true);
          expect(await outcome).toBe(lost.reason);
        }),
      ),
    );
  } finally {
    await catalog.close();
  }
  console.log(`catch-up pass stopped ${stopMillis} ms after the lock session was ended`);
  expect(stopMillis).toBeLessThan(3000);
  // Rolled back on both sides: the target keeps its earlier copy (not the delete, not a part of the new one), the source its entry.
  expect(await targetRowsOfKey()).toEqual({ n: 10, amount: '0' });
  expect(await changeLogEntries()).toBe(1);
}, 60_000);

test('a pass whose stop signal already fired changes nothing and fails with its reason', async () => {
  const stop = new AbortController();
  stop.abort(new Error('the operator lock was lost'));
  await withSessions(async (source, target) => {
    await expect(catchUpPass(source, target, { moveId: MOVE_ID, tables: [ORDERS], limit: undefined, snapshot: false, clock: systemClock, signal: stop.signal })).rejects.toBe(stop.signal.reason);
  });
  expect(await targetRowsOfKey()).toEqual({ n: 10, amount: '0' });
  expect(await changeLogEntries()).toBe(1);
}, 60_000);
