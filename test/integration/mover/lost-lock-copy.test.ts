/**
 * A mover that lost its operator lock in the middle of a table's copy stops the copy at once (the
 * move context's stop signal, fired by the lost lock, destroys the copy's pipeline and drops its
 * sessions): the copy could never commit anyway. Before (b36f963) it went on copying to the end of
 * the table, holding the target's epoch row for share all along, and another operator's `abort`
 * (which raises the target first) failed after the 5 s lock bound with ShardLockError, or on the
 * reader's table lock when it dropped the change capture (review 72).
 */
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { abortMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';
import { LOCK_WAIT_MILLIS } from '../../../src/admin/mover/lock-blockers';
import { endLockSession } from './lock-takeover';

let f: MoverFixture;
let catalogPool: ReturnType<typeof directPool>;
beforeAll(async () => {
  f = await startMoverFixture('rev72_copy', 2);
  const v1 = await f.init(2, 64);
  await f.seed(v1, 0, 400);
  catalogPool = directPool({ connectionString: f.catalogUrl, max: 2 });
}, 60_000);
afterAll(async () => {
  await catalogPool?.end();
  await f?.close();
});

test('an abort while a mover that lost its lock was copying a table (throttled to 8 rows/s) goes through at once; the old copy stopped with reason lock-lost', async () => {
  const c = new TopologyCatalog({ url: f.catalogUrl });
  const from = (await c.latest())!.shardForSlot(0).id;
  await c.close();
  const to = from === 'shard0' ? 'shard1' : 'shard0';
  const dst = f.shards.findIndex((s) => s.id === to);
  let aborted: MoveResult | undefined;
  let abortMillis = 0;
  let takeover: Promise<void> | undefined;
  const old = await moveSlots({
    catalog: f.catalogUrl,
    slots: '0-15',
    to,
    tables: TABLES,
    tuning: { maxRowsPerSecond: 8 },
    hook: (_b, at) => {
      if (at !== 'capturing') return;
      takeover = (async () => {
        await until('the copy into the target under way', async () => (await f.pools[dst]!.query(`select 1 from pg_stat_activity where application_name = 'kysely-scale mover' and query like 'copy % from stdin%'`)).rowCount! > 0, 20_000);
        await endLockSession(catalogPool);
        const started = performance.now();
        aborted = await abortMove({ catalog: f.catalogUrl });
        abortMillis = Math.round(performance.now() - started);
      })();
    },
  });
  await takeover;
  expect(aborted?.error).toBeNull();
  expect(aborted?.status).toBe('aborted');
  // Not held up by the old copy's transaction on the target (the raise's lock bound) nor by its reader's table lock.
  expect(abortMillis).toBeLessThan(LOCK_WAIT_MILLIS);
  expect(old.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'lock-lost' } });
  // Nothing of the old copy remains on the target.
  expect((await f.pools[dst]!.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where application_name = 'kysely-scale mover' and datname = current_database()`)).rows[0]!.n).toBe(0);
}, 120_000);
