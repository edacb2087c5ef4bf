/**
 * An abort takes a move over while its first mover, whose operator lock was lost unnoticed, is
 * between the source's switch and the publish (review 60). The first mover's guarded save was sent
 * beside the target's switch, so the target switch landed although the save was refused: the
 * target then required a version nobody would publish, and refused every app statement (KS001)
 * until some later publish. Now the save comes before the switches (sent beside the fence), the
 * target's switch checks the command's epoch (which the abort raised there: refused, `superseded`),
 * and an abort that ends with a shard requiring a version newer than the catalog's puts it back.
 */
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';
import { endLockSession } from './lock-takeover';
import { latestTopology, usersAtLatest } from './served-rows';

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
    // The claim went before the fence: the mover stops at its lock check before the target's switch
    // (its lock session's end has arrived by then), or else at the target's epoch, which the abort raised.
    expect(result.error).toMatchObject({ code: 'E_MOVE_FAILED' });
    expect(['lock-lost', 'superseded']).toContain((result.error?.context as { reason?: string } | undefined)?.reason);
    const latest = await latestTopology(f.catalogUrl);
    for (const pool of f.pools) {
      const { rows } = await pool.query<{ required_version: number; hidden: string | null }>('select required_version, hidden::text as hidden from kysely_scale.shard_guard');
      expect(rows[0]!.required_version).toBeLessThanOrEqual(latest.version);
      expect(rows[0]!.hidden).toBeNull();
    }
    // An app session routing by the latest version reads every row, from the owners the catalog names.
    expect(await usersAtLatest(f)).toBe(200);
  } finally {
    await catalogPool.end();
  }
}, 120_000);

/** Required version, and whether the shard hides slots 0-15, on each shard (shard0, shard1). */
async function guards(): Promise<{ required: number; hides: boolean }[]> {
  const out: { required: number; hides: boolean }[] = [];
  for (const pool of f.pools) {
    const { rows } = await pool.query<{ required_version: number; hidden: string | null }>('select required_version, hidden::text as hidden from kysely_scale.shard_guard');
    out.push({ required: rows[0]!.required_version, hides: rows[0]!.hidden !== null && rows[0]!.hidden.slice(0, 16) === '1'.repeat(16) });
  }
  return out;
}

test('a mover that notices its lock gone mid-cutover while another operator holds the lock leaves the shards for that operator (review 61, M1); that operator then settles the move', async () => {
  const catalogPool = directPool({ connectionString: f.catalogUrl, max: 2 });
  const other = directPool({ connectionString: f.catalogUrl, max: 1 });
  const otherOperator = await other.connect();
  try {
    const before = await usersAtLatest(f);
    const from = (await latestTopology(f.catalogUrl)).shardForSlot(0).id;
    const result = await moveSlots({
      catalog: f.catalogUrl,
      slots: '0-15',
      to: from === 'shard0' ? 'shard1' : 'shard0',
      tables: TABLES,
      hook: async (_batch, at) => {
        if (at !== 'switched') return;
        await endLockSession(catalogPool);
        // Another operator's command holds the lock now (it may be settling this move).
        await otherOperator.query(`select pg_advisory_lock(hashtext('kysely_scale_operator kysely_scale'))`);
      },
    });
    expect(result.error).toMatchObject({ code: 'E_MOVE_FAILED', message: expect.stringContaining('operator lock was lost') });
    // Left as the switch left it: the source switched (hiding the slots, requiring the unpublished
    // version); the target not switched, since the mover checks its lock again just before the
    // target's switch (it still hides the slots and requires an older version). The
    // code before review 61 reverted the target here; the code before the epoch fence switched it.
    const [source, target] = from === 'shard0' ? await guards() : (await guards()).reverse();
    expect(source).toMatchObject({ hides: true });
    expect(target!.hides).toBe(true);
    expect(target!.required).toBeLessThan(source!.required);
    await otherOperator.query(`select pg_advisory_unlock(hashtext('kysely_scale_operator kysely_scale'))`);
    const resumed = await resumeMove({ catalog: f.catalogUrl });
    expect(resumed.error).toBeNull();
    expect(resumed.status).toBe('done');
    expect(await usersAtLatest(f)).toBe(before);
  } finally {
    otherOperator.release();
    await other.end();
    await catalogPool.end();
  }
}, 120_000);

test('a mover that notices its lock gone mid-cutover with the lock free takes it again and backs out: the owner serves routers at the latest version again', async () => {
  const catalogPool = directPool({ connectionString: f.catalogUrl, max: 2 });
  try {
    const before = await usersAtLatest(f);
    const start = await latestTopology(f.catalogUrl);
    const from = start.shardForSlot(0).id;
    const result = await moveSlots({
      catalog: f.catalogUrl,
      slots: '0-15',
      to: from === 'shard0' ? 'shard1' : 'shard0',
      tables: TABLES,
      hook: async (_batch, at) => {
        if (at === 'switched') await endLockSession(catalogPool);
      },
    });
    expect(result.error).toMatchObject({ code: 'E_MOVE_FAILED', message: expect.stringContaining('operator lock was lost') });
    // Backed out: the owner shows the slots again (the target's copies stay hidden until abort or
    // resume), and no shard requires an unpublished version.
    const [source, target] = from === 'shard0' ? await guards() : (await guards()).reverse();
    expect(source!.hides).toBe(false);
    expect(target!.hides).toBe(true);
    for (const g of [source!, target!]) expect(g.required).toBeLessThanOrEqual(start.version);
    expect(await usersAtLatest(f)).toBe(before);
    const aborted = await abortMove({ catalog: f.catalogUrl });
    expect(aborted.error).toBeNull();
    for (const g of await guards()) expect(g.hides).toBe(false);
    expect(await usersAtLatest(f)).toBe(before);
  } finally {
    await catalogPool.end();
  }
}, 120_000);
