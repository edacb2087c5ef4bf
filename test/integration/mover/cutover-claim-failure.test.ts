/**
 * The cutover's claim (sent beside raising the fence) fails for a reason other than another
 * command: the catalog refuses writes (a failover to a read-only node, here a trigger on the move
 * table raising 25006). (a) With a transaction older than the fence kept open on the source, the
 * fence is lowered at once, not left up for its time (review 80, L1). (b) On the normal path the
 * source is never switched: before the claim moved beside the fence, the source was left switched,
 * requiring a version nobody would publish until a resume. Both then resume to the end.
 */
import { Client } from 'pg';
import { TABLES, type MoverFixture } from './mover-fixture';
import { closeSeededMover, startSeededMover, type SeededMover } from './seeded-mover';
import { latestTopology } from './served-rows';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { directClient } from '../../support/direct-pool';

let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
beforeAll(async () => {
  ({ f, catalogPool } = await startSeededMover('claim_failure_fence', { slotCount: 64, users: 200, catalogConnections: 2 }));
  await catalogPool.query(`create or replace function kysely_scale.test_refuse() returns trigger language plpgsql as $$
    begin raise exception 'cannot execute UPDATE in a read-only transaction (simulated)' using errcode = '25006'; end $$`);
}, 60_000);
afterAll(() => closeSeededMover({ f, catalogPool }));

const refuseSaves = (): Promise<unknown> => catalogPool.query(`create trigger test_refuse before update on kysely_scale.move for each row execute function kysely_scale.test_refuse()`);
const allowSaves = (): Promise<unknown> => catalogPool.query(`drop trigger if exists test_refuse on kysely_scale.move`);

async function sourceState(from: number): Promise<{ fence: string | null; required: number }> {
  const { rows } = await f.pools[from]!.query<{ fence: string | null; required: number }>(
    `select (select max(fenced_until)::text from kysely_scale.slot_move where fenced_until is not null) as fence, (select required_version from kysely_scale.shard_guard) as required`,
  );
  return rows[0]!;
}

async function run(withBlocker: boolean): Promise<{ error: unknown; state: { fence: string | null; required: number }; version: number }> {
  const v = await latestTopology(f.catalogUrl);
  const from = 0;
  const fromId = f.shards[from]!.id;
  const slot = v.slotsOf(fromId)[0]!;
  const to = f.shards[1]!.id;
  let blocker: Client | undefined;
  try {
    const moved = await moveSlots({
      catalog: f.catalogUrl,
      slots: String(slot),
      to,
      tables: TABLES,
      tuning: { drainTimeoutMillis: 200, cutoverAttempts: 1 },
      hook: async (_b, at) => {
        if (at === 'caught-up' && withBlocker) {
          blocker = directClient({ connectionString: f.shards[from]!.primaryUrl });
          await blocker.connect();
          await blocker.query('begin; select 1');
        }
        if (at === 'claiming') await refuseSaves();
      },
    });
    const state = await sourceState(from);
    return { error: moved.error, state, version: v.version };
  } finally {
    await allowSaves();
    await blocker?.query('rollback').catch(() => undefined);
    await blocker?.end().catch(() => undefined);
  }
}

test('a claim refused by a read-only catalog while an older transaction holds the fence back: the fence is lowered at once; resume finishes', async () => {
  const { error, state } = await run(true);
  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(error).toMatchObject({ code: '25006' });
  expect(state.fence).toBeNull();
}, 120_000);

test('a claim refused by a read-only catalog on the normal path: the source is never switched; resume finishes', async () => {
  const { error, state, version } = await run(false);
  expect(error).toMatchObject({ code: '25006' });
  expect(state.fence).not.toBe('infinity');
  expect(state.required).toBeLessThanOrEqual(version);
  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
}, 120_000);
