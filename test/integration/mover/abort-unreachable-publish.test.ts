/**
 * `abort` of a cutover whose publish was sent and may still commit (held on the wire: its outcome
 * unknown, recorded pending), with the target's server stopped. Before, the abort needed the target
 * to settle the batch (it sends the version again and finishes it) and failed having changed
 * nothing: the source, switched, refused every app statement (it requires the unpublished version)
 * until the target came back. Now the catalog settles it: the abort claimed the move before reading
 * the catalog, and a publish of the mover commits only while no other command has saved the move
 * since (checked in the publish's transaction), so the version, absent after the claim, can never
 * be published: the source is switched back and takes writes, and the held publish, delivered
 * afterwards, commits nothing. The target is switched back and cleaned by the next abort, once it
 * is back. Two shards; the catalog on a server of its own behind a proxy that holds the publish.
 */
import { directPool } from '../../support/direct-pool';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { ErrorCodes } from '../../../src/kernel/errors';
import { slotOf } from '../../../src/cluster/slot-hash';
import { eventually } from '../../support/postgres-replication';
import { TABLES, type MoverFixture } from './mover-fixture';
import { startPublishHeldFixture, type PublishHeldFixture } from './publish-held-fixture';
import { within } from './within-deadline';

let x: PublishHeldFixture;
let f: MoverFixture;

beforeAll(async () => {
  x = await startPublishHeldFixture('abort_unreach_pub', 2);
  f = x.f;
}, 120_000);

afterAll(() => x?.close());

/** Change-log entries and capture triggers on `shard`. */
async function capture(shard: string): Promise<{ log: number; triggers: number }> {
  const pool = f.pools[Number(shard.replace('shard', ''))]!;
  const one = async (sql: string): Promise<number> => (await pool.query<{ n: number }>(sql)).rows[0]!.n;
  return { log: await one('select count(*)::int as n from kysely_scale.change_log'), triggers: await one(`select count(*)::int as n from pg_trigger where tgname = 'zz_kysely_scale_capture'`) };
}

/** Backends of the catalog's own sessions (the mover's publish among them) on the catalog database. */
async function catalogSessions(): Promise<number[]> {
  const pool = directPool({ connectionString: x.catalogUrl, max: 1 });
  try {
    return (await pool.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = 'kysely-scale catalog' and datname = current_database()`)).rows.map((r) => r.pid);
  } finally {
    await pool.end();
  }
}

test('a publish held with its outcome unknown, the target stopped: abort switches the source back (writes flow, nothing captured) and the held publish commits nothing; abort again once the target is back cleans it', async () => {
  const start = await x.latest();
  const p = x.plan(start);
  const version = start.version + 1;
  const moved = await moveSlots({
    catalog: x.proxy.via(x.catalogUrl),
    tables: TABLES,
    slots: `${p.slots[0]}-${p.slots[63]}`,
    to: p.to,
    hook: (batch, at) => {
      if (at === 'switched' && batch.index === 0) x.proxy.arm('in exclusive mode', 'publish check');
    },
  });
  expect(moved).toMatchObject({ status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { outcomeUnknown: true, version } } });
  expect(x.proxy.holding).toBe(true);
  // Both shards switched: they require the version, the target shows the slots.
  expect(await x.guard(p.from, p.slots)).toMatchObject({ required: version, hidesBatch: true, fence: 'infinity' });
  expect(await x.guard(p.to, p.slots)).toMatchObject({ required: version, hidesBatch: false });
  expect(await x.routed(p.from, start.version, 'update users set score = score + 1 where id = $1', [p.user])).toBe('error KS001');
  const to = f.cluster.shards[Number(p.to.replace('shard', ''))]!.primary;
  await to.stop();

  const aborted = await within(30_000, 'abort with the target stopped', abortMove({ catalog: x.catalogUrl }));
  expect(aborted).toMatchObject({ ok: false, status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { reason: 'abort-unfinished', shards: [p.to] } } });
  expect(aborted.abortLeft).toEqual([expect.objectContaining({ shard: p.to, role: 'target', batch: 0 })]);
  // The source is switched back: it shows the slots, requires the latest version again, and takes writes, uncaptured.
  const source = await x.guard(p.from, p.slots);
  expect(source).toMatchObject({ hidesAny: false, fence: null });
  expect(source.required).toBeLessThanOrEqual(start.version); // as before the cutover
  expect(await x.routed(p.from, start.version, 'update users set score = score + 1 where id = $1', [p.user])).toBe('1 row(s)');
  expect(await capture(p.from)).toEqual({ log: 0, triggers: 0 });
  expect((await resumeMove({ catalog: x.catalogUrl })).error).toMatchObject({ context: { reason: 'abort-unfinished', shards: [p.to] } });

  // The held publish, delivered now, runs and commits nothing: the abort's claim came first.
  const held = await catalogSessions();
  expect(held.length).toBeGreaterThan(0);
  await x.proxy.release(true);
  await eventually('the held publish has run', async () => (await catalogSessions()).every((pid) => !held.includes(pid)));
  expect((await x.latest()).version).toBe(start.version);
  for (const slot of p.slots) expect((await x.latest()).shardForSlot(slot).id).toBe(p.from);

  await to.start();
  const finished = await abortMove({ catalog: x.catalogUrl });
  expect(finished).toMatchObject({ ok: true, status: 'aborted', rolledBack: 1, error: null });
  const target = await x.guard(p.to, p.slots);
  expect(target).toMatchObject({ hidesAny: false });
  expect(target.required).toBeLessThanOrEqual(start.version);
  const users = await f.rowsOf('users');
  expect(users.filter((u) => u.shard === Number(p.to.replace('shard', '')) && p.slots.includes(slotOf(Number(u.key))))).toEqual([]);
  expect(users).toHaveLength(300);
  expect(new Set(users.map((u) => u.key)).size).toBe(300);
  expect(await verifyShards({ catalog: x.catalogUrl, tables: TABLES })).toMatchObject({ ok: true, misplaced: [] });
  expect((await f.pools[Number(p.from.replace('shard', ''))]!.query('select score from users where id = $1', [p.user])).rows[0].score).toBe(1);
}, 120_000);
