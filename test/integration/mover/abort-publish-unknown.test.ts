/**
 * An abort of a multi-batch move while a batch's publish is unsettled (review 50). Before, the
 * abort walked the batches in reverse and rolled back a later batch on the same source first:
 * its release deleted every fence row of the move on that shard, so the outstanding batch then
 * looked never switched and was reverted, while its held publish could still commit (routers at
 * the new version read 0 rows on the new owner). And an abort that stopped part-way left later
 * batches rolled back in an open move that `resume` then finished as `done` with slots never moved.
 * Now every `cutover` is settled before any batch is rolled back (an unsettled one stops the abort
 * with nothing changed), a batch's release drops only its own slots' fence rows while another batch
 * of the move holds state on that source, and `resume` refuses a move whose abort stopped part-way.
 */
import { directPool } from '../../support/direct-pool';
import type { Topology } from '../../../src/cluster/topology';
import { TOPOLOGY_CATALOG_DEFAULTS } from '../../../src/admin/topology-catalog';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { MoveStore } from '../../../src/admin/mover/move-store';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { ErrorCodes } from '../../../src/kernel/errors';
import { slotOf } from '../../../src/cluster/slot-hash';
import { TABLES, type MoverFixture } from './mover-fixture';
import type { HeldPublishProxy } from './held-publish-proxy';
import { startPublishHeldFixture, type GuardState, type PublishHeldFixture } from './publish-held-fixture';

let x: PublishHeldFixture;
let f: MoverFixture;
let catalogUrl: string;
let proxy: HeldPublishProxy;

beforeAll(async () => {
  x = await startPublishHeldFixture('abort_unknown', 3);
  ({ f, catalogUrl, proxy } = x);
}, 120_000);

afterAll(() => x?.close());

const latest = (): Promise<Topology> => x.latest();
const plan = (start: Topology): ReturnType<PublishHeldFixture['plan']> => x.plan(start);
const guard = (shard: string, slots: readonly number[]): Promise<GuardState> => x.guard(shard, slots);
const routed = (shard: string, version: number, sql: string, values: unknown[]): Promise<string> => x.routed(shard, version, sql, values);

function owner(t: Topology, slot: number): string {
  return t.shardForSlot(slot).id;
}

async function usersOn(shard: string, id: number): Promise<number> {
  return (await f.pools[Number(shard.replace('shard', ''))]!.query('select count(*)::int as n from users where id = $1', [id])).rows[0].n;
}

async function openMoveBatches(): Promise<string[]> {
  const pool = directPool({ connectionString: catalogUrl, max: 1 });
  try {
    return ((await new MoveStore(pool, TOPOLOGY_CATALOG_DEFAULTS.schema).open())?.batches ?? []).map((b) => b.phase);
  } finally {
    await pool.end();
  }
}

test('two sources, batch 0\'s publish unknown, the abort\'s publish unknown again: the abort changes nothing, resume finishes every slot', async () => {
  const start = await latest();
  const s0 = start.slotsOf('shard0');
  const s1 = start.slotsOf('shard1');
  const lo = s0[s0.length - 8]!;
  const hi = s1[7]!;
  expect([owner(start, lo), owner(start, hi)]).toEqual(['shard0', 'shard1']);
  const result = await moveSlots({
    catalog: proxy.via(catalogUrl),
    tables: TABLES,
    slots: `${lo}-${hi}`,
    to: 'shard2',
    hook: (batch, at) => {
      if (at === 'switched' && batch.index === 0) proxy.arm('in exclusive mode', 'publish check');
    },
  });
  expect(result).toMatchObject({ status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { outcomeUnknown: true } } });
  await proxy.release(false);
  proxy.arm('in exclusive mode', 'publish check');
  const stopped = await abortMove({ catalog: proxy.via(catalogUrl) });
  await proxy.release(false);
  expect(stopped).toMatchObject({ ok: false, status: 'open', error: { code: ErrorCodes.MOVE_FAILED } });
  const phases = await openMoveBatches();
  expect(phases[0]).toBe('cutover');
  expect(phases).not.toContain('aborted');
  const resumed = await resumeMove({ catalog: catalogUrl });
  expect(resumed).toMatchObject({ ok: true, status: 'done' });
  const end = await latest();
  for (let slot = lo; slot <= hi; slot++) expect(owner(end, slot)).toBe('shard2');
  const after = await verifyShards({ catalog: catalogUrl });
  expect(after).toMatchObject({ ok: true, misplaced: [] });
  for (const pool of f.pools) expect((await pool.query('select count(*)::int as n from kysely_scale.slot_move')).rows[0].n).toBe(0);
  expect(await f.rowsOf('users')).toHaveLength(300);
}, 120_000);

test('abort with a batch\'s publish held: the batch is settled (published) before the later batch is rolled back; an abort stopped part-way is not resumed', async () => {
  const before = await verifyShards({ catalog: catalogUrl, tables: TABLES });
  expect(before.ok).toBe(true);
  const start = await latest();
  const p = plan(start);
  const version = start.version + 1;
  const result = await moveSlots({
    catalog: proxy.via(catalogUrl),
    tables: TABLES,
    slots: `${p.slots[0]}-${p.slots[63]}`,
    to: p.to,
    tuning: { batchSlots: 32 },
    hook: (batch, at) => {
      if (at === 'switched' && batch.index === 0) proxy.arm('in exclusive mode', 'publish check');
    },
  });
  expect(result).toMatchObject({ status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { outcomeUnknown: true, version } } });
  const b0 = p.slots.slice(0, 32);
  const user = [...Array(300).keys()].find((id) => b0.includes(slotOf(id)))!;

  // The abort settles batch 0 first: it publishes the version again (the held publish has not
  // reached the catalog) and finishes the batch; the abort is interrupted in batch 0's clean-up,
  // after batch 1 (later, same source) was rolled back.
  const partWay = await abortMove({
    catalog: catalogUrl,
    hook: (batch, at) => {
      if (at === 'cleaning' && batch.index === 0) throw new Error('interrupted clean-up');
    },
  });
  expect(partWay).toMatchObject({ ok: false, status: 'open', versions: [version] });
  expect(await openMoveBatches()).toEqual(['published', 'aborted']);
  expect(owner(await latest(), b0[0]!)).toBe(p.to);
  // The held publish arrives late: it commits nothing (the version is taken).
  await proxy.release(true);
  expect((await latest()).version).toBe(version);
  expect(await routed(p.to, version, 'select id from users where id = $1', [user])).toBe('1 row(s)');
  expect(await routed(p.to, version, 'update users set score = score + 1 where id = $1', [user])).toBe('1 row(s)');
  // ... batch 0's fence survived batch 1's release; the rows stay served at the new version.
  expect(await guard(p.from, b0)).toMatchObject({ hidesBatch: true, fence: 'infinity' });
  expect(await routed(p.to, version, 'select id from users where id = $1', [user])).toBe('1 row(s)');
  // ... is never finished by a resume as `done`:
  const resumed = await resumeMove({ catalog: catalogUrl });
  expect(resumed).toMatchObject({ ok: false, status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { reason: 'abort-unfinished' } } });
  expect(resumed.error!.message).toMatch(/run abort again/);
  // ... but by abort again.
  const aborted = await abortMove({ catalog: catalogUrl });
  expect(aborted).toMatchObject({ ok: true, status: 'aborted', rolledBack: 0, completed: 1 });
  const end = await latest();
  expect(end.version).toBe(version);
  for (const slot of b0) expect(owner(end, slot)).toBe(p.to);
  for (const slot of p.slots.slice(32)) expect(owner(end, slot)).toBe(p.from);
  expect(await usersOn(p.to, user)).toBe(1);
  expect(await usersOn(p.from, user)).toBe(0);
  const after = await verifyShards({ catalog: catalogUrl });
  expect(after).toMatchObject({ ok: true, misplaced: [] });
  for (const pool of f.pools) {
    expect((await pool.query('select count(*)::int as n from kysely_scale.slot_move')).rows[0].n).toBe(0);
    expect((await pool.query('select hidden from kysely_scale.shard_guard')).rows[0].hidden).toBeNull();
  }
  const users = await f.rowsOf('users');
  expect(users).toHaveLength(300);
  expect(new Set(users.map((u) => u.key)).size).toBe(300);
}, 120_000);
