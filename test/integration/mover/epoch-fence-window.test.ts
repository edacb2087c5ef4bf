/**
 * The fenced window (fence up → publish) is on the app's critical path: the source's writers of the
 * moving slots wait through it. A resumed command raises its shards when it opens their sessions,
 * before the fence (review 72, D2): its window holds no raise (a round trip, and a wait of up to the
 * 5 s lock bound for an older command's open transaction), and sends as many statements as a
 * move's own. Statements are counted by wrapping the real pg Client's `query`.
 */
import { Client } from 'pg';
import { TABLES, type MoverFixture } from './mover-fixture';
import { closeSeededMover, startSeededMover, type SeededMover } from './seeded-mover';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import type { HookPoint } from '../../../src/admin/mover/move-context';

let f: MoverFixture;
let catalogPool: SeededMover['catalogPool'];
beforeAll(async () => {
  ({ f, catalogPool } = await startSeededMover('epoch_window', { slotCount: 64, users: 200, catalogConnections: 1 }));
}, 60_000);
afterAll(() => closeSeededMover({ f, catalogPool }));

/** The statements the mover's shard sessions send between the hook points 'fencing' and 'publishing'. */
function fencedStatements(): { readonly texts: string[]; hook(point: HookPoint): void; restore(): void } {
  const texts: string[] = [];
  let open = false;
  const original = Client.prototype.query;
  (Client.prototype as unknown as { query: unknown }).query = function (this: Client, ...args: unknown[]) {
    const name = (this as unknown as { connectionParameters?: { application_name?: string } }).connectionParameters?.application_name;
    if (open && name === 'kysely-scale mover') {
      const first = args[0] as { text?: string } | string;
      texts.push((typeof first === 'string' ? first : (first?.text ?? '(stream)')).replace(/\s+/g, ' ').slice(0, 90));
    }
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
  return {
    texts,
    hook: (point) => {
      if (point === 'fencing') open = true;
      if (point === 'publishing') open = false;
    },
    restore: () => ((Client.prototype as unknown as { query: unknown }).query = original),
  };
}

async function owners(): Promise<{ from: string; to: string; dst: number }> {
  const c = new TopologyCatalog({ url: f.catalogUrl });
  try {
    const from = (await c.latest())!.shardForSlot(0).id;
    const to = from === 'shard0' ? 'shard1' : 'shard0';
    return { from, to, dst: f.shards.findIndex((s) => s.id === to) };
  } finally {
    await c.close();
  }
}

test('a resume from caught-up raised the target before its fence, and its fenced window sends no more statements than a move\'s', async () => {
  let { to } = await owners();
  const moveWindow = fencedStatements();
  try {
    const moved = await moveSlots({ catalog: f.catalogUrl, slots: '0-15', to, tables: TABLES, hook: (_b, at) => moveWindow.hook(at) });
    expect(moved.error).toBeNull();
  } finally {
    moveWindow.restore();
  }
  const next = await owners();
  to = next.to;
  const stopped = await moveSlots({
    catalog: f.catalogUrl,
    slots: '0-15',
    to,
    tables: TABLES,
    hook: (_b, at) => {
      if (at === 'caught-up') throw new Error('injected: stop before the cutover');
    },
  });
  expect(stopped.status).toBe('open');
  const resumeWindow = fencedStatements();
  let atFence: { target: string; command: string } | undefined;
  try {
    const resumed = await resumeMove({
      catalog: f.catalogUrl,
      hook: async (_b, at) => {
        resumeWindow.hook(at);
        if (at !== 'fencing') return;
        const command = (await catalogPool.query<{ v: string }>('select last_value::text as v from kysely_scale.operator_epoch')).rows[0]!.v;
        atFence = { target: (await f.pools[next.dst]!.query<{ e: string }>('select epoch::text as e from kysely_scale.mover_epoch')).rows[0]!.e, command };
      },
    });
    expect(resumed.error).toBeNull();
  } finally {
    resumeWindow.restore();
  }
  expect(atFence!.target).toBe(atFence!.command);
  expect(resumeWindow.texts.filter((t) => t.includes('raise_mover_epoch'))).toEqual([]);
  expect(moveWindow.texts.length).toBeGreaterThan(0);
  expect(resumeWindow.texts.length).toBeLessThanOrEqual(moveWindow.texts.length);
}, 120_000);
