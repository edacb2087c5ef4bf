/**
 * An `abort` of a drain's unsharded step that loses its operator lock part-way (review 72, D1): its
 * source changes (required version restored, fence lowered) are held up by a lock on the source,
 * its target sessions stall (SIGSTOP). Another operator's `resume` reads the source (still
 * switched), publishes the target as the tables' holder, and cleans the source up. Before
 * (b36f963) the resume raised neither shard before its publish, and the old abort's clear of the
 * target (every row of the unsharded tables on their new holder) landed after it: every unsharded
 * row lost. Now the resume raises both shards when it opens their sessions, and the old abort is
 * refused (superseded).
 */
import type { Client } from 'pg';
import { notesByShard, SHARED_NOTES } from './unsharded-fixture';
import { TABLES, type MoverFixture } from './mover-fixture';
import { closeSeededMover, startSeededMover, type SeededMover } from './seeded-mover';
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import { directClient } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';
import { endLockSession } from './lock-takeover';

let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
let admin: Client;
beforeAll(async () => {
  ({ f, catalogPool } = await startSeededMover('rev72_unsh', { slotCount: 32, users: 60, catalogConnections: 2, unsharded: true }));
  admin = directClient(f.shards[0]!.primaryUrl);
  await admin.connect();
}, 60_000);
afterAll(async () => {
  await admin?.end();
  await closeSeededMover({ f, catalogPool });
});

function cont(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone with its session
    }
  }
}

test('an abort that lost its lock cannot clear the unsharded tables\' new holder after another operator\'s resume published it', async () => {
  const stopped = await drainShard({
    catalog: f.catalogUrl,
    tables: TABLES,
    shardId: 'shard0',
    tuning: { cleanupDelayMillis: 0 },
    hook: (_b, at) => {
      if (at === 'unsharded-switched') throw new Error('injected: stop once the source switched');
    },
  });
  expect(stopped.status).toBe('open');
  expect(stopped.unsharded?.phase).toBe('copied');

  // The old abort's source change waits on this row lock (its epoch check already passed).
  await admin.query('begin');
  await admin.query('select 1 from kysely_scale.shard_guard for update');
  const oldRun: Promise<MoveResult> = abortMove({ catalog: f.catalogUrl });
  await until('the old abort waiting on the source', async () => (await f.pools[0]!.query(`select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%required_version%'`)).rowCount === 1, 20_000);
  // Its target path stalls.
  const { rows } = await f.pools[1]!.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = 'kysely-scale mover' and datname = current_database()`);
  const targetPids = rows.map((r) => r.pid);
  for (const pid of targetPids) process.kill(pid, 'SIGSTOP');
  await endLockSession(catalogPool);

  let committed = false;
  const release = async (): Promise<void> => {
    if (committed) return;
    committed = true;
    await admin.query('commit');
  };
  let oldSettled = false;
  void oldRun.finally(() => (oldSettled = true));
  // A resume that raises the source first waits for the old abort's transaction: let it go then.
  const poller = until('a raise waiting', async () => committed || (await f.pools[0]!.query(`select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%raise_mover_epoch%'`)).rowCount === 1, 60_000).then(release, () => undefined);
  let notesOnTargetAfterOldAbort: number | undefined;
  let oldResult: MoveResult | undefined;
  const resumed = await resumeMove({
    catalog: f.catalogUrl,
    tables: TABLES,
    hook: async (_b, at) => {
      if (at !== 'unsharded-published') return;
      await release(); // the old abort's source changes go on
      await until('the old abort\'s fence lowered (or the old abort stopped)', async () => oldSettled || (await f.pools[0]!.query('select 1 from kysely_scale.unsharded_fence')).rowCount === 0, 10_000);
      cont(targetPids);
      oldResult = await oldRun;
      notesOnTargetAfterOldAbort = (await f.pools[1]!.query<{ n: number }>('select count(*)::int as n from notes')).rows[0]!.n;
    },
  });
  cont(targetPids);
  await release();
  await poller;
  oldResult ??= await oldRun;
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  const latest = (await catalog.latest())!;
  await catalog.close();
  const notes = await notesByShard(f.pools);
  expect(resumed.error).toBeNull();
  expect(latest.unshardedShardId).toBe('shard1');
  expect(notesOnTargetAfterOldAbort).toBe(SHARED_NOTES);
  expect(notes.size).toBe(SHARED_NOTES);
  // The old abort must have been refused on the target once the resume published the target as holder.
  expect(oldResult?.error).toMatchObject({ context: { reason: 'superseded' } });
}, 120_000);
