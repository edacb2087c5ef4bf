/**
 * A takeover command (resume, abort) raises a shard's epoch when it opens its session there, before
 * it reads anything it decides from (cutoverState, sourceSwitched, targetShows; review 72, D1).
 * Window: a mover backing out of a cutover (its lock confirmed) reverts the target, then loses its
 * lock; its source revert is held up (its source backends SIGSTOPped: a slow or dropped path).
 * Another operator's resume reads the source (switched) and the target (hidden), finishes the
 * cutover and publishes. Before (b36f963), the resume raised only the target before its publish:
 * the old mover's source revert then landed, the source was unfenced and showed the moved slots at
 * the old version, and an app write at the old version was accepted there and deleted by the
 * resume's clean-up (an acknowledged write lost). Now the revert is refused (superseded).
 */
import { TABLES, type MoverFixture } from './mover-fixture';
import { closeSeededMover, startSeededMover, type SeededMover } from './seeded-mover';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import { slotOf } from '../../../src/cluster/slot-hash';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';
import { endLockSession } from './lock-takeover';
import { latestTopology } from './served-rows';

const USERS = 200;
let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
beforeAll(async () => {
  ({ f, catalogPool } = await startSeededMover('rev72_lazy', { slotCount: 64, users: USERS, catalogConnections: 2 }));
}, 60_000);
afterAll(() => closeSeededMover({ f, catalogPool }));

test('an old mover\'s source revert held up past another operator\'s publish is refused: a write at the old version stays refused on the source', async () => {
  const before = await latestTopology(f.catalogUrl);
  const from = before.shardForSlot(0).id;
  const to = from === 'shard0' ? 'shard1' : 'shard0';
  const src = f.shards.findIndex((s) => s.id === from);
  const dst = f.shards.findIndex((s) => s.id === to);
  const lateId = [...Array(10_000).keys()].map((i) => 5000 + i).find((id) => slotOf(id, 64) < 16)!;
  const stopped: number[] = [];
  let takeover: Promise<MoveResult> | undefined;
  let oldRun: Promise<MoveResult> | undefined;
  let staleWrite: unknown = 'not tried';
  let sourceAfterPublish: unknown;
  const resumeHook = async (_b: unknown, at: string): Promise<void> => {
    if (at !== 'published') return;
    for (const pid of stopped) process.kill(pid, 'SIGCONT');
    await oldRun; // the old mover's source revert, then its refused save
    sourceAfterPublish = (await f.pools[src]!.query('select required_version, hidden::text as hidden, (select array_agg(fenced_until::text) from kysely_scale.slot_move) as fences from kysely_scale.shard_guard')).rows[0];
    // An app that has not seen the publish yet (version `before.version`) writes a user of a moved slot on the source.
    const app = directPool({ connectionString: f.appUrl(src), max: 1, options: `-c kysely_scale.topology_version=${before.version}` });
    try {
      staleWrite = await app.query(`insert into users (id, name) values (${lateId}, 'late')`).then(() => 'accepted', (e: unknown) => e);
    } finally {
      await app.end();
    }
  };
  oldRun = moveSlots({
    catalog: f.catalogUrl,
    slots: '0-15',
    to,
    tables: TABLES,
    hook: async (_batch, at) => {
      if (at === 'publishing') throw new Error('injected: the publish could not be sent');
      if (at !== 'reverting') return;
      // The old mover's source path stalls: its sessions there are frozen until the resume published.
      const { rows } = await f.pools[src]!.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = 'kysely-scale mover' and datname = current_database()`);
      for (const r of rows) {
        process.kill(r.pid, 'SIGSTOP');
        stopped.push(r.pid);
      }
      await endLockSession(catalogPool);
      takeover = (async () => {
        // Once the old mover's target revert committed (the target hides the slots again).
        await until('the target reverted', async () => (await f.pools[dst]!.query<{ h: string | null }>('select hidden::text as h from kysely_scale.shard_guard')).rows[0]!.h !== null, 20_000);
        return resumeMove({ catalog: f.catalogUrl, hook: resumeHook });
      })();
    },
  });
  const old = await oldRun;
  const resumed = await takeover!;
  for (const pid of stopped) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // ended with its session
    }
  }
  expect(resumed.error).toBeNull();
  expect((await latestTopology(f.catalogUrl)).shardForSlot(0).id).toBe(to);
  const late = await f.rowsOf('users').then((rows) => rows.filter((r) => r.key === String(lateId)));
  // A write at the old version is refused on the source after the publish (KS001), so no acknowledged write can vanish in its clean-up.
  expect(staleWrite).toMatchObject({ code: 'KS001' });
  expect(late).toEqual([]);
  expect(sourceAfterPublish).toMatchObject({ required_version: before.version + 1 });
  // The old mover's source revert must have been refused once the resume acted on the move.
  expect(old.error).toMatchObject({ context: { reason: 'superseded' } });
}, 120_000);
