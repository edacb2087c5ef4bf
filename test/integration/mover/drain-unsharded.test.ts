/**
 * Drain of the shard holding the unsharded tables: bad input refused before anything changes, the
 * dry run's plan, then the drain under writes from an instance following the catalog and from a
 * stale one that never does (it can neither reload nor reach the new holder).
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { directClient } from '../../support/direct-pool';
import type { MoverFixture } from './mover-fixture';
import { notesByShard, SHARED_NOTES, startNotesApp, startUnshardedFixture, type NoteLine, type NotesApp } from './unsharded-fixture';
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { TABLES } from './mover-fixture';

let f: MoverFixture;

function admin(...args: string[]): Promise<{ code: number | null; stdout: string }> {
  const root = resolve(__dirname, '../../..');
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(root, 'src/admin/cli/admin-cli.ts'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] });
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  return new Promise((done) => child.on('exit', (code) => done({ code, stdout })));
}

beforeAll(async () => {
  f = await startUnshardedFixture('mover_unsharded', 3);
  const v1 = await f.init(3, 64);
  await f.seed(v1, 0, 150);
  // Registers the sharded tables (a refused move registers none).
  expect((await verifyShards({ catalog: f.catalogUrl, tables: TABLES })).ok).toBe(true);
}, 60_000);

afterAll(() => f?.close());

async function catalogState(): Promise<{ version: number; holder: string | undefined; shards: string[]; open: number }> {
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  const latest = (await catalog.latest())!;
  await catalog.close();
  const c = directClient({ connectionString: f.catalogUrl });
  await c.connect();
  const open = (await c.query(`select count(*)::int as n from kysely_scale.move where status = 'open'`).catch(() => ({ rows: [{ n: 0 }] }))).rows[0].n as number;
  await c.end();
  return { version: latest.version, holder: latest.unshardedShardId, shards: latest.shards.map((s) => s.id), open };
}

test('bad input is refused with a coded reason before anything changes; the dry run lists the unsharded tables and their rows', async () => {
  const before = await catalogState();
  const refusal = async (options: Partial<Parameters<typeof drainShard>[0]>): Promise<unknown> => {
    const result = await drainShard({ catalog: f.catalogUrl, tables: TABLES, shardId: 'shard0', ...options });
    expect(result.status).toBe('refused');
    return result.error?.context.reason;
  };
  expect(await refusal({ unshardedTo: 'shard9' })).toBe('unknown-shard');
  expect(await refusal({ unshardedTo: 'shard0' })).toBe('unsharded-target');
  expect(await refusal({ shardId: 'shard1', unshardedTo: 'shard2' })).toBe('unsharded-target'); // shard1 does not hold them
  await f.pools[2]!.query('alter table notes add column extra text');
  try {
    const result = await drainShard({ catalog: f.catalogUrl, tables: TABLES, shardId: 'shard0', unshardedTo: 'shard2' });
    expect(result.error).toMatchObject({ code: 'E_MOVE_REFUSED', context: { reason: 'schema-mismatch' } });
    expect(result.error!.message).toContain('+ shard2: public.notes column 4: extra text');
  } finally {
    await f.pools[2]!.query('alter table notes drop column extra');
  }
  await f.pools[1]!.query(`insert into notes (id, author, body) values (999999, 'stale copy', 0)`);
  try {
    const result = await drainShard({ catalog: f.catalogUrl, shardId: 'shard0' });
    expect(result.error).toMatchObject({ code: 'E_MOVE_REFUSED', context: { reason: 'unsharded-target-not-empty', shardId: 'shard1', tables: ['public.notes'], rows: [1] } });
    // With no holder recorded, rows of them on another shard than the target make the holder uncertain.
    const elsewhere = await drainShard({ catalog: f.catalogUrl, shardId: 'shard0', unshardedTo: 'shard2' });
    expect(elsewhere.error).toMatchObject({ context: { reason: 'unsharded-holder', shardId: 'shard1' } });
  } finally {
    await f.pools[1]!.query('delete from notes');
  }
  const plan = await drainShard({ catalog: f.catalogUrl, shardId: 'shard0', dryRun: true });
  expect(plan.error).toBeNull();
  expect(plan.plan?.unsharded).toEqual({ source: 'shard0', target: 'shard1', tables: [{ name: 'public.countries', rows: 0 }, { name: 'public.notes', rows: SHARED_NOTES }] });
  // The CLI: --json carries the same plan; the text names each table with its rows; a bad target exits 1 with the reason.
  // One after another: each takes the operator lock.
  const json = await admin('drain', '--catalog', f.catalogUrl, '--shard', 'shard0', '--unsharded-to', 'shard2', '--dry-run', '--json');
  const text = await admin('drain', '--catalog', f.catalogUrl, '--shard', 'shard0', '--dry-run');
  const bad = await admin('drain', '--catalog', f.catalogUrl, '--shard', 'shard0', '--unsharded-to', 'shard0', '--json');
  expect(json.code).toBe(0);
  expect(JSON.parse(json.stdout).plan.unsharded).toEqual({ source: 'shard0', target: 'shard2', tables: [{ name: 'public.countries', rows: 0 }, { name: 'public.notes', rows: SHARED_NOTES }] });
  expect(text.stdout).toContain(`then the unsharded tables shard0 → shard1 (writes to them fenced while they copy): public.countries (0 rows), public.notes (${SHARED_NOTES} rows)`);
  expect(bad.code).toBe(1);
  expect(JSON.parse(bad.stdout).error).toMatchObject({ code: 'E_MOVE_REFUSED', context: { reason: 'unsharded-target' } });
  expect(await catalogState()).toEqual(before);
  expect(before).toMatchObject({ version: 1, holder: undefined, open: 0 });
});

/** Each acknowledged write's body per id, in the order the process acknowledged them (one writer per row). */
function acked(lines: readonly NoteLine[]): Map<number, { body: number; at: number }[]> {
  const out = new Map<number, { body: number; at: number }[]>();
  for (const l of lines) if (l.op !== undefined) out.set(l.id!, [...(out.get(l.id!) ?? []), { body: l.body!, at: l.at! }]);
  return out;
}

test('drain of the holder under writes: nothing lost or duplicated, the follower pauses briefly, stale instances are refused and never read old values', async () => {
  // `early` never follows the catalog from version 1 (the slot batches already fence it off shard0);
  // `late` starts once the slots are gone, on the version just before the holder moves, so only the
  // unsharded fence and switch keep it off the old copies.
  const [follower, early] = await Promise.all([startNotesApp('follower', f.catalogUrl), startNotesApp('stale', f.catalogUrl)]);
  let late: NotesApp | undefined;
  let drained: Awaited<ReturnType<typeof drainShard>>;
  let started: number;
  let finished: number;
  const atEnd = new Map<NotesApp, number>();
  try {
    await Promise.all([follower.progress(60), early.progress(60)]);
    started = Date.now();
    drained = await drainShard({
      catalog: f.catalogUrl,
      tables: TABLES,
      shardId: 'shard0',
      tuning: { cleanupDelayMillis: 200 },
      hook: async (_batch, point) => {
        if (point !== 'unsharded-planned') return;
        late = await startNotesApp('stale', f.catalogUrl);
        await late.progress(60);
      },
    });
    finished = Date.now();
    expect(drained.error).toBeNull();
    expect(drained.status).toBe('done');
    expect(drained.unsharded).toMatchObject({ source: 'shard0', target: 'shard1', phase: 'cleaned', tables: ['public.countries', 'public.notes'] });
    for (const app of [early, late!]) atEnd.set(app, app.lines.length);
    await Promise.all([follower.progress(60), early.progress(40), late!.progress(40)]);
  } finally {
    await Promise.all([follower, early, late].map((app) => app?.stop()));
  }
  const stale = [early, late!];
  expect(follower.lines.find((l) => l.done)?.done).toMatchObject({ unknown: 0, badReads: 0, refused: 0 });
  for (const app of stale) {
    const done = app.lines.find((l) => l.done)?.done;
    expect(done).toMatchObject({ unknown: 0, badReads: 0 });
    expect(done!.refused).toBeGreaterThan(0);
    // After the switch, every statement of a stale instance is refused: none reaches the old holder.
    const after = app.lines.slice(atEnd.get(app)).filter((l) => l.done === undefined);
    expect(after.length).toBeGreaterThan(0);
    expect(after.filter((l) => l.refused === undefined && l.readRefused === undefined)).toEqual([]);
    expect(app.lines.filter((l) => l.op !== undefined && l.at! > finished)).toEqual([]);
  }
  // The late instance wrote to the old holder before the fence (those rows moved with the table).
  expect(late!.lines.filter((l) => l.op !== undefined).length).toBeGreaterThan(0);

  const state = await catalogState();
  expect(state).toMatchObject({ holder: 'shard1', shards: ['shard1', 'shard2'], open: 0 });

  // The union of the shards equals the acknowledged writes: 0 lost, 0 duplicated, 0 unknown rows.
  const rows = await notesByShard(f.pools);
  const writes = new Map<number, { body: number; at: number }[]>();
  for (const app of [follower, ...stale]) for (const [id, w] of acked(app.lines)) writes.set(id, w);
  const expected = new Map<number, number>();
  for (let id = 1; id <= SHARED_NOTES; id++) expected.set(id, 0);
  for (const [id, w] of writes) expected.set(id, w[w.length - 1]!.body);
  const duplicated = [...rows.values()].filter((copies) => copies.length > 1).length;
  const lost = [...expected.keys()].filter((id) => !rows.has(id)).length;
  const wrong = [...expected].filter(([id, body]) => rows.has(id) && rows.get(id)![0]![1] !== body).length;
  const unexpected = [...rows.keys()].filter((id) => !expected.has(id)).length;
  expect({ lost, duplicated, wrong, unexpected }).toEqual({ lost: 0, duplicated: 0, wrong: 0, unexpected: 0 });
  expect([...rows.values()].every((copies) => copies[0]![0] === 1)).toBe(true); // all on shard1, the new holder

  // No read returned a body older than one acknowledged before the read began (each row has one writer, whose bodies only grow).
  let staleReads = 0;
  for (const l of [follower, ...stale].flatMap((app) => app.lines)) {
    if (l.read === undefined) continue;
    const before = (writes.get(l.read) ?? []).filter((w) => w.at < l.from!);
    const newest = before.length === 0 ? 0 : before[before.length - 1]!.body;
    if ((l.body ?? -1) < newest) staleReads++;
  }
  expect(staleReads).toBe(0);

  const pauses = follower.lines.filter((l) => l.op !== undefined && l.at! >= started && l.at! <= finished + 1000).map((l) => l.ms!).sort((a, b) => a - b);
  const p99 = pauses[Math.min(pauses.length - 1, Math.floor(pauses.length * 0.99))]!;
  process.stdout.write(
    `unsharded drain: fence ${drained.unsharded!.fenceMillis} ms, ${drained.unsharded!.rowsCopied} rows copied, drain ${finished - started} ms; follower writes during it: ${pauses.length}, p50 ${pauses[pauses.length >> 1]} ms, p99 ${p99} ms, max ${pauses[pauses.length - 1]} ms\n`,
  );
  expect(drained.unsharded!.fenceMillis).toBeLessThan(2000);
  // Once the catalog records the holder, --unsharded-from naming another shard is refused: routers follow the catalog.
  const conflict = await drainShard({ catalog: f.catalogUrl, shardId: 'shard2', unshardedFrom: 'shard2', dryRun: true });
  expect(conflict.error).toMatchObject({ code: 'E_MOVE_REFUSED', context: { reason: 'unsharded-holder', holder: 'shard1', unshardedFrom: 'shard2' } });
  // The operator's history shows the unsharded step beside the batches.
  const moves = await admin('moves', '--catalog', f.catalogUrl);
  expect(moves.code).toBe(0);
  expect(moves.stdout).toMatch(new RegExp(`unsharded tables \\(\\d+\\) shard0 → shard1  cleaned  v${drained.unsharded!.version}  ${drained.unsharded!.rowsCopied} rows`));
}, 60_000);
