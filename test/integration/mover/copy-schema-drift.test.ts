/**
 * A migration run on one shard during a move, around the operator lock (the app's own migrator,
 * psql): the copy of the changed table fails. It used to fail with PostgreSQL's bare 22P04 and no
 * code; now it is E_MOVE_FAILED naming the table and shards with the SQLSTATE, and once the
 * migration is finished on every shard, resume completes the move with every row in place.
 */
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import type { HookPoint } from '../../../src/admin/mover/move-context';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('copy_schema_drift', 2);
  await f.seed(await f.init(2), 0, 200);
}, 60_000);

afterAll(() => f?.close());

test('a column added on the source during the copy fails the move with E_MOVE_FAILED and its SQLSTATE; resume finishes once every shard has it', async () => {
  let migrated = false;
  const hook = async (_batch: unknown, point: HookPoint): Promise<void> => {
    if (point !== 'capturing' || migrated) return;
    migrated = true;
    await f.pools[0]!.query('alter table users add column nickname text');
  };
  const failed = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '0-511', to: 'shard1', hook });
  expect(failed.ok).toBe(false);
  expect(failed.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { sqlState: '22P04', table: 'users', source: 'shard0', target: 'shard1' } });
  expect(failed.error!.message).toMatch(/finish it on every shard; then resume/);
  await f.pools[1]!.query('alter table users add column nickname text');
  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed.ok).toBe(true);
  const verified = await verifyShards({ catalog: f.catalogUrl, tables: TABLES });
  expect(verified.ok).toBe(true);
  expect((await f.rowsOf('users')).length).toBe(200);
});
