/**
 * A catalog whose `operator_epoch` sequence went back (restored from a backup, or re-created) while
 * the shards keep their epochs (review 72, D3). Before (b36f963) every command was refused as
 * `superseded`, blaming a lost lock, and once the sequence reached the shards' epoch an EQUAL epoch
 * of another command was accepted (not fenced). Now each shard keeps the holder (a random id drawn
 * with the epoch) beside it and refuses an equal epoch of another holder, and a refused raise whose
 * shard is ahead of the catalog's sequence fails with reason `epoch-sequence-behind` and the
 * `setval` that fixes it; with that run, the move goes on.
 */
import { TABLES, type MoverFixture } from './mover-fixture';
import { closeSeededMover, startSeededMover, type SeededMover } from './seeded-mover';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { otherThanSlot0Owner } from './served-rows';

let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
beforeAll(async () => {
  ({ f, catalogPool } = await startSeededMover('epoch_behind', { slotCount: 64, users: 200, catalogConnections: 1 }));
}, 60_000);
afterAll(() => closeSeededMover({ f, catalogPool }));

const target = (): Promise<string> => otherThanSlot0Owner(f.catalogUrl);

const shardEpochs = async (): Promise<bigint[]> => Promise.all(f.pools.map(async (p) => BigInt((await p.query<{ e: string }>('select epoch::text as e from kysely_scale.mover_epoch')).rows[0]!.e)));

test('a sequence behind the shards: a coded error with the fix (not superseded), an equal epoch of another command refused, and the move goes on once the fix ran', async () => {
  // Two moves: the shards carry epochs 1 and 2.
  for (let i = 0; i < 2; i++) expect((await moveSlots({ catalog: f.catalogUrl, slots: '0-15', to: await target(), tables: TABLES })).error).toBeNull();
  const before = await shardEpochs();
  const highest = before.reduce((a, b) => (a > b ? a : b));
  expect(highest).toBeGreaterThanOrEqual(2n);
  // The catalog restored from a backup taken before those moves: its sequence starts again.
  await catalogPool.query('drop sequence kysely_scale.operator_epoch');
  await catalogPool.query('create sequence kysely_scale.operator_epoch');

  const moved = await moveSlots({ catalog: f.catalogUrl, slots: '0-15', to: await target(), tables: TABLES });
  expect(moved.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'epoch-sequence-behind', epoch: '1', fix: expect.stringContaining(`select setval('"kysely_scale"."operator_epoch"', `) } });
  expect(moved.error!.message).toMatch(/sequence "kysely_scale"\."operator_epoch" is behind the shards.*restored from a backup/);
  // The sequence now reaches a shard's epoch: that EQUAL epoch of this command is refused too, as the same error.
  await catalogPool.query(`select setval('kysely_scale.operator_epoch', ${highest - 1n})`);
  const equal = await resumeMove({ catalog: f.catalogUrl });
  expect(equal.error).toMatchObject({ context: { reason: 'epoch-sequence-behind', epoch: String(highest), shardEpoch: String(highest) } });
  expect(equal.error!.message).toContain('from another command');
  expect(await shardEpochs()).toEqual(before); // nothing raised, nothing changed on the shards

  // The fix the error gives, with the largest epoch over every shard: the move goes on.
  await catalogPool.query(`select setval('"kysely_scale"."operator_epoch"', ${highest})`);
  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed.status).toBe('done');
  expect((await shardEpochs()).every((e) => e > highest)).toBe(true);
}, 120_000);
