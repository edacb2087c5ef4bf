import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { slotOf } from '../../../src/cluster/slot-hash';

let f: MoverFixture;
const repoRoot = join(__dirname, '../../..');

beforeAll(async () => {
  f = await startMoverFixture('mover_crash', 2);
  await f.init(2);
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  await f.seed((await catalog.latest())!, 0, 300);
  await catalog.close();
}, 60_000);

afterAll(() => f?.close());

/** Runs the mover in a child process that kills itself with SIGKILL at `point`. */
function crashAt(point: string, slots: string, to: string): Promise<NodeJS.Signals | null> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'crash-child.ts'), f.catalogUrl, point, slots, to], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve(signal) : reject(new Error(`the mover did not die at ${point}: ${output}`))));
  });
}

async function leftovers(): Promise<{ fences: number; hidden: (string | null)[]; log: number }> {
  let fences = 0;
  let log = 0;
  const hidden: (string | null)[] = [];
  for (const pool of f.pools) {
    fences += (await pool.query('select count(*)::int as n from kysely_scale.slot_move')).rows[0].n;
    log += (await pool.query('select count(*)::int as n from kysely_scale.change_log')).rows[0].n;
    hidden.push((await pool.query('select hidden from kysely_scale.shard_guard')).rows[0].hidden);
  }
  return { fences, hidden, log };
}

const cases: [string, 'resume' | 'abort'][] = [
  ['capturing', 'resume'],
  ['copied', 'abort'],
  // Just before the cutover's claim is sent, and with it in flight beside the fence (review 80).
  ['claiming', 'resume'],
  ['fencing', 'abort'],
  ['fenced', 'resume'],
  ['fenced', 'abort'],
  ['switched', 'resume'],
  ['switched', 'abort'],
  ['published', 'abort'],
  ['cleaning', 'resume'],
];

test.each(cases)('killed (SIGKILL) at %s, then %s: nothing lost, nothing duplicated, no fence or hidden slot left', async (point, then) => {
  const before = await verifyShards({ catalog: f.catalogUrl, tables: TABLES });
  expect(before.ok).toBe(true);
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  const start = (await catalog.latest())!;
  // Move 64 slots that shard0 owns now to shard1, or back.
  const from = start.slotsOf('shard0').length >= 64 ? 'shard0' : 'shard1';
  const to = from === 'shard0' ? 'shard1' : 'shard0';
  const slots = start.slotsOf(from).slice(0, 64);
  await crashAt(point, `${slots[0]}-${slots[63]}`, to);
  if (point === 'fenced') {
    // The dead mover's fence still refuses writes to its slots; once its time has passed it refuses no more.
    const user = [...Array(300).keys()].find((id) => slots.includes(slotOf(id)))!;
    const source = f.pools[start.shardById(from)!.index]!;
    await expect(source.query('update users set score = score + 1 where id = $1', [user])).rejects.toMatchObject({ code: 'KS002' });
    await source.query(`update kysely_scale.slot_move set fenced_until = now() - interval '1 second'`);
    await source.query('update users set score = score + 1 where id = $1', [user]);
  }
  const result = then === 'resume' ? await resumeMove({ catalog: f.catalogUrl }) : await abortMove({ catalog: f.catalogUrl });
  expect(result.error).toBeNull();
  const after = await verifyShards({ catalog: f.catalogUrl });
  expect(after).toMatchObject({ ok: true, misplaced: [] });
  const touched = point === 'fenced' ? [...Array(300).keys()].find((id) => slots.includes(slotOf(id)))! : undefined;
  for (const table of Object.keys(TABLES)) {
    for (const [slot, sum] of Object.entries(before.slots[table]!)) {
      if (touched !== undefined && table === 'users' && Number(slot) === slotOf(touched)) continue; // its row changed on purpose
      expect([table, slot, after.slots[table]![Number(slot)]]).toEqual([table, slot, sum]);
    }
    expect(Object.keys(after.slots[table]!)).toEqual(Object.keys(before.slots[table]!));
  }
  const end = (await catalog.latest())!;
  await catalog.close();
  const movedAway = slots.every((s) => end.shardForSlot(s).id === to);
  const stayed = slots.every((s) => end.shardForSlot(s).id === from);
  // resume finishes the move; abort rolls it back unless it was already published (then it finishes it).
  expect(then === 'resume' || point === 'published' ? movedAway : stayed).toBe(true);
  expect(await leftovers()).toEqual({ fences: 0, hidden: [null, null], log: 0 });
});
