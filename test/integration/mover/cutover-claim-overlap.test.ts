/**
 * A fresh cutover sends the move's claim (the guarded save that stops a command which lost the move)
 * beside raising its fence, and waits for its answer only before the source switches: the catalog
 * round trip it costs overlaps the fenced catch-up instead of lengthening the pause of the moving
 * slots' writers. The claim still decides before anything is switched: refused, the source stays
 * unswitched and the target hides the slots. Statements are seen by wrapping the real pg Client's
 * `query`; shards and catalog are real.
 */
import { Client } from 'pg';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { abortMove } from '../../../src/admin/mover/move-control';
import { directPool } from '../../support/direct-pool';
import { latestTopology, otherThanSlot0Owner, usersAtLatest } from './served-rows';

let f: MoverFixture;
let catalogPool: ReturnType<typeof directPool>;
beforeAll(async () => {
  f = await startMoverFixture('claim_overlap', 2);
  const v1 = await f.init(2, 64);
  await f.seed(v1, 0, 200);
  catalogPool = directPool({ connectionString: f.catalogUrl, max: 1 });
}, 60_000);
afterAll(async () => {
  await catalogPool?.end();
  await f?.close();
});

const SAVE = 'update "kysely_scale".move set status';
const SWITCH = 'do $switch$';

/** Hook points and the move's saves (sent and answered) and the source's switch, in the order they happened. */
function timeline(): { readonly events: string[]; restore(): void } {
  const events: string[] = [];
  const original = Client.prototype.query;
  (Client.prototype as unknown as { query: unknown }).query = function (this: Client, ...args: unknown[]) {
    const first = args[0] as { text?: string } | string;
    const text = typeof first === 'string' ? first : (first?.text ?? '');
    const what = text.includes(SAVE) ? 'save' : text.includes(SWITCH) ? 'switch' : undefined;
    if (what !== undefined) events.push(`${what} sent`);
    const result = (original as (...a: unknown[]) => unknown).apply(this, args);
    if (what !== undefined && result instanceof Promise) result.then(() => events.push(`${what} answered`), () => events.push(`${what} failed`));
    return result;
  } as typeof original;
  return { events, restore: () => ((Client.prototype as unknown as { query: unknown }).query = original) };
}

const target = (): Promise<string> => otherThanSlot0Owner(f.catalogUrl);

test('a fresh cutover has its claim answered before the source switches, and sends no catalog save between the switch and the publish', async () => {
  const seen = timeline();
  try {
    const moved = await moveSlots({ catalog: f.catalogUrl, slots: '0-15', to: await target(), tables: TABLES, hook: (_b, at) => void seen.events.push(`hook ${at}`) });
    expect(moved.error).toBeNull();
  } finally {
    seen.restore();
  }
  const e = seen.events;
  const claiming = e.indexOf('hook claiming');
  const claimSent = e.indexOf('save sent', claiming);
  const fencing = e.indexOf('hook fencing');
  const switched = e.indexOf('hook switched');
  const publishing = e.indexOf('hook publishing', switched);
  expect(claiming).toBeGreaterThanOrEqual(0);
  // Sent before the fence's hook point (beside the fence), answered before the switch went out.
  expect(claimSent).toBeGreaterThan(claiming);
  expect(claimSent).toBeLessThan(fencing);
  expect(e.indexOf('save answered', claimSent)).toBeLessThan(e.indexOf('switch sent', claimSent));
  expect(e.slice(switched, publishing).filter((x) => x.startsWith('save'))).toEqual([]);
}, 120_000);

test('a claim refused because another command saved the move meanwhile leaves the source unswitched and the target hiding the slots', async () => {
  const to = await target();
  const from = to === 'shard0' ? 'shard1' : 'shard0';
  const guard = async (id: string): Promise<{ required: number; hides: boolean }> => {
    const pool = f.pools[f.shards.findIndex((s) => s.id === id)]!;
    const { rows } = await pool.query<{ required: number; hides: boolean }>(`select required_version as required, coalesce(position('1' in hidden::text) > 0, false) as hides from kysely_scale.shard_guard`);
    return rows[0]!;
  };
  const before = await latestTopology(f.catalogUrl);
  const result = await moveSlots({
    catalog: f.catalogUrl,
    slots: '0-15',
    to,
    tables: TABLES,
    hook: async (_b, at) => {
      // Another command saves the move record (as a resume or abort claiming it does).
      if (at === 'claiming') await catalogPool.query(`update kysely_scale.move set revision = revision + 1, writer = 'another command', writer_seq = 1 where status = 'open'`);
    },
  });
  expect(result).toMatchObject({ ok: false, status: 'open', error: { code: 'E_MOVE_FAILED', context: { reason: 'record-changed' } } });
  // Nothing switched: the source's fence is not permanent, neither shard requires a newer version, the target hides the slots.
  const { rows: fences } = await f.pools[f.shards.findIndex((s) => s.id === from)]!.query<{ n: number }>(`select count(*)::int as n from kysely_scale.slot_move where fenced_until = 'infinity'`);
  expect(fences[0]!.n).toBe(0);
  expect((await guard(from)).required).toBeLessThanOrEqual(before.version);
  expect(await guard(from)).toMatchObject({ hides: false });
  expect(await guard(to)).toMatchObject({ hides: true });
  expect((await guard(to)).required).toBeLessThanOrEqual(before.version);
  expect((await latestTopology(f.catalogUrl)).version).toBe(before.version);
  // The other command (here an abort) settles the move; every row is served at the latest version.
  const aborted = await abortMove({ catalog: f.catalogUrl });
  expect(aborted.error).toBeNull();
  expect(await usersAtLatest(f)).toBe(200);
}, 120_000);
