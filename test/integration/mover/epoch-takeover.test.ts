/**
 * The fencing token (mover epoch, `mover-epoch.ts`) closes the windows the operator lock's checks
 * leave: a mover paused just after its lock check (or its claim and lock check) and before its
 * next change to a shard, whose lock's catalog session then ends, while another operator's
 * `resume` or `abort` takes the lock and settles the move. When the first mover goes on, the shard
 * refuses its change (`E_MOVE_FAILED`, reason `superseded`, SQLSTATE KS004), and the shards hold
 * exactly what the other command left: every row once, where the catalog's latest version routes it.
 *
 * 1. A revert right after its lock was confirmed (a cutover backed out of): before, it landed after
 *    the other command published the batch and cleaned the source up, hiding the moved rows on
 *    their new owner (rows lost to every router).
 * 2. A target switch right after its claim and lock check: before, it landed after an abort
 *    finished, leaving the target requiring a version nobody publishes (every app statement there
 *    refused, KS001).
 * Also: a move begun on shards without the epoch table, resumed by this version (the table comes
 * with the first raise), and a catalog without the epoch sequence.
 */
import { TABLES, type MoverFixture } from './mover-fixture';
import { closeSeededMover, startSeededMover, type SeededMover } from './seeded-mover';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import { endLockSession } from './lock-takeover';
import { latestTopology, usersAtLatest } from './served-rows';

const USERS = 200;
let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
beforeAll(async () => {
  ({ f, catalogPool } = await startSeededMover('epoch_takeover', { slotCount: 64, users: USERS, catalogConnections: 2 }));
}, 60_000);
afterAll(() => closeSeededMover({ f, catalogPool }));

/** Checked directly on the shards: every user once and every order once, each on the shard the latest version routes its key to; no slot hidden, no version required past the latest, no move state left. */
async function expectSettled(): Promise<void> {
  const latest = await latestTopology(f.catalogUrl);
  const ids = f.shards.map((s) => s.id);
  for (const table of ['users', 'orders'] as const) {
    const rows = await f.rowsOf(table);
    const perKey = table === 'users' ? 1 : 2;
    const copies = new Map<string, number>();
    for (const r of rows) copies.set(r.key, (copies.get(r.key) ?? 0) + 1);
    expect(copies.size).toBe(USERS); // none lost
    expect([...copies.values()].filter((n) => n !== perKey)).toEqual([]); // none duplicated
    const misplaced = rows.filter((r) => ids[r.shard] !== latest.shardForKey(BigInt(r.key)).id);
    expect(misplaced).toEqual([]);
  }
  for (const pool of f.pools) {
    const { rows } = await pool.query<{ required_version: number; hidden: string | null; moving: number }>(
      'select required_version, hidden::text as hidden, (select count(*)::int from kysely_scale.slot_move) as moving from kysely_scale.shard_guard',
    );
    expect(rows[0]!.required_version).toBeLessThanOrEqual(latest.version);
    expect(rows[0]!.hidden).toBeNull();
    expect(rows[0]!.moving).toBe(0);
  }
  expect(await usersAtLatest(f)).toBe(USERS);
}

/** Slots 0-15 to the shard that does not own them now. */
async function nextMove(): Promise<{ from: string; to: string }> {
  const from = (await latestTopology(f.catalogUrl)).shardForSlot(0).id;
  return { from, to: from === 'shard0' ? 'shard1' : 'shard0' };
}

/**
 * The two windows: where the first mover pauses (after its last lock check, before its change), and
 * the slots' owner once the other command settled (window 1: the target showed the slots, so a
 * publish may have been sent, and resume and abort alike finish the batch; window 2: abort rolls it
 * back, resume finishes it).
 */
const WINDOWS = [
  { window: 1, other: 'resume', what: 'a revert right after its lock was confirmed', pause: 'reverting', owner: 'target' },
  { window: 1, other: 'abort', what: 'a revert right after its lock was confirmed', pause: 'reverting', owner: 'target' },
  { window: 2, other: 'abort', what: 'a target switch right after its claim and lock check', pause: 'showing', owner: 'source' },
  { window: 2, other: 'resume', what: 'a target switch right after its claim and lock check', pause: 'showing', owner: 'target' },
] as const;

for (const w of WINDOWS) {
  test(`window ${w.window}, ${w.other}: ${w.what}, once another operator's ${w.other} settled the move, is refused by the shard; the shards hold the ${w.other}'s outcome`, async () => {
    const { from, to } = await nextMove();
    let settled: MoveResult | undefined;
    const result = await moveSlots({
      catalog: f.catalogUrl,
      slots: '0-15',
      to,
      tables: TABLES,
      hook: async (_batch, at) => {
        // Window 1: the cutover fails before its publish, so this mover backs out (claim, lock confirmed, revert).
        if (w.window === 1 && at === 'publishing') throw new Error('injected: the publish could not be sent');
        if (at !== w.pause) return;
        await endLockSession(catalogPool);
        settled = w.other === 'resume' ? await resumeMove({ catalog: f.catalogUrl }) : await abortMove({ catalog: f.catalogUrl });
      },
    });
    expect(settled?.error).toBeNull();
    expect(settled?.status).toBe(w.other === 'resume' ? 'done' : 'aborted');
    expect((await latestTopology(f.catalogUrl)).shardForSlot(0).id).toBe(w.owner === 'source' ? from : to);
    await expectSettled();
    expect(result.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'superseded', sqlState: 'KS004', shard: to } });
  }, 120_000);
}

test('a move begun on shards without the epoch table and a catalog without the epoch sequence (an older version) is resumed by this one', async () => {
  const { to } = await nextMove();
  const stopped = await moveSlots({
    catalog: f.catalogUrl,
    slots: '0-15',
    to,
    tables: TABLES,
    hook: (_batch, at) => {
      if (at === 'copied') throw new Error('injected: stop after the copy');
    },
  });
  expect(stopped.status).toBe('open');
  for (const pool of f.pools) await pool.query('drop table kysely_scale.mover_epoch cascade; drop function kysely_scale.raise_mover_epoch(bigint, text); drop function kysely_scale.check_mover_epoch(bigint, text)');
  await catalogPool.query('drop sequence kysely_scale.operator_epoch');
  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed.status).toBe('done');
  // Both shards carry the resume's epoch now, the sequence's first value.
  for (const pool of f.pools) expect((await pool.query<{ epoch: string }>('select epoch::text as epoch from kysely_scale.mover_epoch')).rows).toEqual([{ epoch: '1' }]);
  await expectSettled();
}, 120_000);

test('every holder of the operator lock that draws gets a larger epoch than the holders before it; one that does not draw leaves the sequence alone', async () => {
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  const sequenceNow = async (): Promise<string> => (await catalogPool.query<{ v: string }>('select last_value::text as v from kysely_scale.operator_epoch')).rows[0]!.v;
  try {
    const first = await catalog.withOperatorLock(async (_lost, _confirm, epoch) => [await epoch.draw(), await epoch.draw()]);
    expect(typeof first[0]).toBe('bigint');
    expect(first[1]).toBe(first[0]); // drawn once per holder
    const before = await sequenceNow();
    expect(before).toBe(String(first[0]));
    expect(await catalog.withOperatorLock(async (_l, _c, epoch) => epoch.latest())).toBe(first[0]);
    // A command that changes no shard through the mover (init, migrate) never draws.
    expect(await catalog.withOperatorLock(async () => 'ran')).toBe('ran');
    expect(await sequenceNow()).toBe(before);
    const second = await catalog.withOperatorLock(async (_lost, _confirm, epoch) => epoch.draw());
    expect(second! > first[0]!).toBe(true);
  } finally {
    await catalog.close();
  }
});
