/**
 * An abort takes a move over while its first mover, whose operator lock was lost unnoticed, is
 * between the source's switch and the publish (review 60). The first mover's guarded save was sent
 * beside the target's switch, so the target switch landed although the save was refused: the
 * target then required a version nobody would publish, and refused every app statement (KS001)
 * until some later publish. Now the save comes before the target's switch (the mover stops there),
 * and an abort that ends with a shard requiring a version newer than the catalog's puts it back.
 */
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { abortMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';

let f: MoverFixture;
beforeAll(async () => {
  f = await startMoverFixture('takeover_cutover', 2);
}, 60_000);
afterAll(() => f?.close());

test('an abort taking over between the switch and the publish: the first mover stops before the target switches; every shard serves routers at the latest version', async () => {
  const v1 = await f.init(2, 64);
  await f.seed(v1, 0, 200);
  const catalogPool = directPool({ connectionString: f.catalogUrl, max: 2 });
  let aborted: Awaited<ReturnType<typeof abortMove>> | undefined;
  try {
    const result = await moveSlots({
      catalog: f.catalogUrl,
      slots: '0-15',
      to: 'shard1',
      tables: TABLES,
      hook: async (_batch, at) => {
        if (at !== 'switched') return;
        // The first mover's lock goes without its knowing; another operator aborts the move meanwhile.
        const { rows } = await catalogPool.query<{ pid: number }>(
          `select a.pid from pg_locks l join pg_stat_activity a using (pid) where l.locktype = 'advisory' and l.granted and a.datname = current_database()`,
        );
        await catalogPool.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
        await until('the lock free', async () => (await catalogPool.query<{ n: number }>(`select count(*)::int as n from pg_locks where locktype = 'advisory' and granted`)).rows[0]!.n === 0, 10_000);
        aborted = await abortMove({ catalog: f.catalogUrl });
      },
    });
    expect(aborted?.error).toBeNull();
    expect(aborted?.status).toBe('aborted');
    expect(result.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'record-changed' } });
    const catalog = new TopologyCatalog({ url: f.catalogUrl });
    const latest = (await catalog.latest())!;
    await catalog.close();
    for (const pool of f.pools) {
      const { rows } = await pool.query<{ required_version: number; hidden: string | null }>('select required_version, hidden::text as hidden from kysely_scale.shard_guard');
      expect(rows[0]!.required_version).toBeLessThanOrEqual(latest.version);
      expect(rows[0]!.hidden).toBeNull();
    }
    // An app session routing by the latest version reads every row, from the owners the catalog names.
    let total = 0;
    for (let i = 0; i < f.pools.length; i++) {
      const app = directPool({ connectionString: f.appUrl(i), max: 1, options: `-c kysely_scale.topology_version=${latest.version}` });
      try {
        total += (await app.query<{ n: number }>('select count(*)::int as n from users')).rows[0]!.n;
      } finally {
        await app.end();
      }
    }
    expect(total).toBe(200);
  } finally {
    await catalogPool.end();
  }
}, 120_000);
