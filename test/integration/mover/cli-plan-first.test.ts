/**
 * The move commands show their plan first: an operator sees the batches, slots, estimated rows
 * and time before the progress lines, and the result at the end (text on stdout; with --json the
 * plan is the first JSON line on stderr). The library reports it through `onPlan`, before
 * anything changes and before any progress report.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { admin, repoRoot, SECRET, withPassword } from '../admin/admin-cli-process';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import type { MovePlanSummary } from '../../../src/admin/mover/move-result';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';

let f: MoverFixture;
let scratch: string;

beforeAll(async () => {
  f = await startMoverFixture('mover_cli_plan', 3);
  await f.seed(await f.init(2), 0, 300);
  scratch = await mkdtemp(join(tmpdir(), 'kscale-plan-'));
}, 150_000);

afterAll(async () => {
  await f?.close();
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

/** The CLI with stdout and stderr into one file, so the output is in the order it was written. */
async function adminInterleaved(...args: string[]): Promise<{ code: number | null; output: string }> {
  const path = join(scratch, `run-${Date.now()}.log`);
  const file = await open(path, 'w');
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/admin/cli/admin-cli.ts'), ...args], { cwd: repoRoot, stdio: ['ignore', file.fd, file.fd] });
    const code = await new Promise<number | null>((done) => child.on('exit', done));
    return { code, output: await readFile(path, 'utf8') };
  } finally {
    await file.close();
  }
}

test('add prints its plan before the first progress line and its result after the last', async () => {
  const run = await adminInterleaved('add', '--catalog', withPassword(f.catalogUrl), '--shard', `shard2=${withPassword(f.shards[2]!.primaryUrl)}`, '--table', 'users=id', '--table', 'orders=user_id');
  expect(run.output).not.toContain(SECRET);
  expect(run.code).toBe(0);
  const lines = run.output.trim().split('\n');
  const plan = lines.findIndex((l) => l.startsWith('Plan: 2 batches, 1365 slots, ~'));
  const firstProgress = lines.findIndex((l) => l.startsWith('{'));
  const lastProgress = lines.findLastIndex((l) => l.startsWith('{'));
  const done = lines.findIndex((l) => /^add \(move 1\) done: \d+ rows copied/.test(l));
  expect(plan).toBeGreaterThanOrEqual(0);
  expect(firstProgress).toBeGreaterThan(plan);
  expect(done).toBeGreaterThan(lastProgress);
  // The batches follow the plan's first line, and the plan is printed once.
  expect(lines[plan + 1]).toMatch(/^ {2}shard0 → shard2 {2}slots \S+ \(\d+\) {2}~\d+ rows$/);
  expect(lines.filter((l) => l.startsWith('Plan: '))).toHaveLength(1);
}, 120_000);

test('with --json the plan is the first line on stderr (type "plan", the result\'s plan), then the progress lines (type "progress")', async () => {
  const run = await admin('move', '--catalog', f.catalogUrl, '--slots', '0-99', '--to', 'shard1', '--json');
  expect(run.code).toBe(0);
  const result = JSON.parse(run.stdout) as { ok: boolean; plan: MovePlanSummary };
  const [first, ...rest] = run.stderr.trim().split('\n').map((l) => JSON.parse(l) as { type: string; plan?: MovePlanSummary; phase?: string });
  expect(first).toEqual({ type: 'plan', plan: result.plan });
  expect(result.plan.batches.length).toBeGreaterThan(0);
  expect(rest.length).toBeGreaterThan(0);
  for (const line of rest) expect(line).toMatchObject({ type: 'progress', phase: expect.any(String) });
}, 120_000);

test('the library calls onPlan once, with the result\'s plan, before any progress report (and for a dry run too)', async () => {
  const events: { kind: 'plan' | 'progress'; plan?: MovePlanSummary }[] = [];
  const options = { catalog: f.catalogUrl, tables: TABLES, slots: '100-199', to: 'shard1', onPlan: (plan: MovePlanSummary) => events.push({ kind: 'plan', plan }), onProgress: () => events.push({ kind: 'progress' }) };
  const dry = await moveSlots({ ...options, dryRun: true });
  expect(events).toEqual([{ kind: 'plan', plan: dry.plan }]);
  events.length = 0;
  const result = await moveSlots(options);
  expect(result.error).toBeNull();
  expect(events[0]).toEqual({ kind: 'plan', plan: result.plan });
  expect(events.filter((e) => e.kind === 'plan')).toHaveLength(1);
  expect(events.length).toBeGreaterThan(1);
}, 120_000);
