/**
 * A drain's mover is killed (-9) while its save of the pending publish mark (saved just before the
 * unsharded tables' publish is sent) is held on the wire. `abort` rolls the step back, rightly: the
 * record it read has no mark. Then the held save reaches the catalog. Before the move store's
 * guarded save (63ed18d), it reopened the aborted move with the mark set, and a second `abort`
 * trusted the mark: it published the emptied target as the holder and truncated the source, every
 * unsharded row lost (found by review 56). Now the late save applies to nothing: the move stays
 * aborted, and every row stays on the holder the topology names.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startUnshardedFixture, notesByShard } from './unsharded-fixture';
import { startHeldPublishProxy } from './held-publish-proxy';
import { abortMove, moveHistory, resumeMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { until } from '../replication/replication-fault-fixture';
import { directPool } from '../../support/direct-pool';

test('a save of the pending publish mark arriving after abort rolled the step back changes nothing; a second abort or a resume finds no open move', async () => {
  const f = await startUnshardedFixture('unsharded_late_save', 2);
  const proxy = await startHeldPublishProxy(Number(new URL(f.catalogUrl).port));
  const catalogPool = directPool({ connectionString: f.catalogUrl, max: 1 });
  try {
    const v1 = await f.init(2, 32);
    await f.seed(v1, 0, 60);
    proxy.arm('"publishPending"', 'no-such-application');
    const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'drain-shard0-child.ts'), proxy.via(f.catalogUrl)], { cwd: join(__dirname, '../../..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    try {
      await until('the save of the pending mark held', () => proxy.holding || child.exitCode !== null, 60_000);
      expect({ holding: proxy.holding, out }).toMatchObject({ holding: true });
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const first = await abortMove({ catalog: f.catalogUrl });
    expect(first.error).toBeNull();
    expect(first.unsharded?.phase).toBe('aborted');

    await proxy.release(true); // the held save runs now; its server process ends after it
    const heldSaves = async (): Promise<number> =>
      (await catalogPool.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where query like 'update %move set%' and pid <> pg_backend_pid()`)).rows[0]!.n;
    await until('the held save run', async () => (await heldSaves()) === 0, 10_000);
    const history = await moveHistory({ catalog: f.catalogUrl });
    expect(history.moves[0]).toMatchObject({ status: 'aborted' });
    expect(history.moves[0]!.unsharded?.phase).toBe('aborted');
    expect((await resumeMove({ catalog: f.catalogUrl })).error).toMatchObject({ code: 'E_MOVE_REFUSED' });
    expect((await abortMove({ catalog: f.catalogUrl })).error).toMatchObject({ code: 'E_MOVE_REFUSED' });

    // The record as the unguarded store left it (reopened, the mark set): a mark on a source that
    // is not switched is stale (no publish goes out before the switch), so abort rolls back again
    // and publishes nothing.
    const catalog = new TopologyCatalog({ url: f.catalogUrl });
    const before = (await catalog.latest())!.version;
    await catalogPool.query(
      `update kysely_scale.move set status = 'open', unsharded = jsonb_set(jsonb_set(unsharded, '{phase}', '"copied"'), '{publishPending}', unsharded -> 'version') where id = $1`,
      [history.moves[0]!.id],
    );
    const again = await abortMove({ catalog: f.catalogUrl });
    expect(again.error).toBeNull();
    expect(again.unsharded).toMatchObject({ phase: 'aborted', holderMoved: false });
    expect(again.versions).toEqual([]);
    const latest = (await catalog.latest())!;
    expect(latest.version).toBe(before);
    await catalog.close();
    expect(latest.unshardedShardId ?? 'shard0').toBe('shard0');
    const rows = await notesByShard(f.pools);
    expect(rows.size).toBe(40);
    expect([...rows.values()].every((copies) => copies.length === 1 && copies[0]![0] === 0)).toBe(true); // once each, on shard0
  } finally {
    await catalogPool.end();
    await proxy.close();
    await f.close();
  }
}, 120_000);
