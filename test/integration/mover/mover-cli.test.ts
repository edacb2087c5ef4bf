import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { startMoverFixture, type MoverFixture } from './mover-fixture';

const repoRoot = resolve(__dirname, '../../..');
const cli = resolve(repoRoot, 'src/admin/cli/admin-cli.ts');
const SECRET = 'Sup3rSecret';
let f: MoverFixture;
let catalog: string;

function admin(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((done) => child.on('exit', (code) => done({ code, stdout, stderr })));
}

beforeAll(async () => {
  f = await startMoverFixture('mover_cli', 3);
  const url = new URL(f.catalogUrl);
  url.password = SECRET;
  catalog = url.toString();
  await f.seed(await f.init(2), 0, 200);
}, 150_000);

afterAll(() => f?.close());

test('add --dry-run prints the plan and changes nothing; add moves an equal share with one JSON progress line per phase or second; verify and moves report; no password printed', async () => {
  const shard2 = new URL(f.shards[2]!.primaryUrl);
  shard2.password = SECRET;
  const plan = await admin('add', '--catalog', catalog, '--shard', `shard2=${shard2.toString()}`, '--table', 'users=id', '--table', 'orders=user_id', '--dry-run', '--json');
  expect(plan.code).toBe(0);
  const planned = JSON.parse(plan.stdout);
  expect(planned).toMatchObject({ ok: true, dryRun: true, status: 'planned', plan: { slots: 1365 } });
  expect(planned.plan.batches.map((b: { source: string; target: string }) => `${b.source}>${b.target}`)).toEqual(['shard0>shard2', 'shard1>shard2']);
  expect(planned.plan.estimatedRows).toBeGreaterThan(0);

  // The dry run registered no table: the first real command names them.
  const unregistered = await admin('verify', '--catalog', catalog);
  expect(unregistered.code).toBe(1);
  expect(unregistered.stdout).toContain('No sharded tables are registered');

  const added = await admin('add', '--catalog', catalog, '--shard', `shard2=${shard2.toString()}`, '--table', 'users=id', '--table', 'orders=user_id');
  expect(added.stderr).not.toContain(SECRET);
  expect(added.stdout).not.toContain(SECRET);
  expect(added.code).toBe(0);
  expect(added.stdout).toMatch(/^Plan: 2 batches, 1365 slots/);
  expect(added.stdout).toMatch(/add \(move 1\) done: \d+ rows copied, versions 2, 3, 4 published/);
  const progress = added.stderr.trim().split('\n').map((l) => JSON.parse(l) as { phase: string; batch: number });
  expect(progress.filter((p) => p.batch === 1).map((p) => p.phase)).toEqual(expect.arrayContaining(['capturing', 'copied', 'caught-up', 'cutover', 'published', 'cleaned']));

  const verified = await admin('verify', '--catalog', catalog);
  expect(verified.code).toBe(0);
  expect(verified.stdout).toContain('Topology version 4: every row is on the shard that owns its slot');
  expect(verified.stdout).toContain('users  200 rows');

  const moves = await admin('moves', '--catalog', catalog, '--json');
  expect(JSON.parse(moves.stdout).moves[0]).toMatchObject({ id: 1, kind: 'add', status: 'done' });

  const usage = await admin('move', '--catalog', catalog, '--slots', '0-9');
  expect(usage.code).toBe(2);
  expect(usage.stderr).toContain('move needs --to.');
  const refused = await admin('move', '--catalog', catalog, '--slots', '0-9', '--to', 'nope');
  expect(refused.code).toBe(1);
  expect(refused.stdout).toContain('E_MOVE_REFUSED: No shard "nope"');
}, 150_000);
