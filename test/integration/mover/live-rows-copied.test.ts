/**
 * The rows copied while a table copies are saved every few seconds (so `moves` shows them), and a
 * copy killed mid-table and resumed counts that table from its start again: the resumed move's
 * rows copied are the rows it moved, not the dead run's partial count plus the full recopy.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { moveHistory, resumeMove } from '../../../src/admin/mover/move-control';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_live_rows', 2);
  await f.seed(await f.init(2), 0, 2000);
}, 60_000);

afterAll(() => f?.close());

test('killed mid-table with a partial count saved, then resumed: rows copied equals the rows moved', async () => {
  const before = await verifyShards({ catalog: f.catalogUrl, tables: TABLES });
  expect(before.ok).toBe(true);
  const moved = Object.keys(TABLES).reduce((n, table) => n + Object.entries(before.slots[table]!).filter(([slot]) => Number(slot) < 1024).reduce((m, [, c]) => m + c.rows, 0), 0);
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'crash-child.ts'), f.catalogUrl, 'never', '0-1023', 'shard1', '200'], { cwd: join(__dirname, '../../..'), stdio: 'ignore' });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  // Poll the running mover's stored record until it shows a partial count of its first table.
  let partial = 0;
  const deadline = performance.now() + 30_000;
  while (partial === 0 && performance.now() < deadline) {
    const batch = (await moveHistory({ catalog: f.catalogUrl, limit: 1 })).moves[0]?.batches[0];
    if (batch?.phase === 'capturing' && batch.rowsCopied > 0) partial = batch.rowsCopied;
    else await new Promise((resolve) => setTimeout(resolve, 200)); // polling a running process
  }
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  expect(partial).toBeGreaterThan(0);
  expect(partial).toBeLessThan(moved);
  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed.rowsCopied).toBe(moved);
  expect((await verifyShards({ catalog: f.catalogUrl })).ok).toBe(true);
}, 90_000);
