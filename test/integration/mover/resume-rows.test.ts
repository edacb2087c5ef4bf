/**
 * What `resume` says it copied: the rows this run copied (`rowsCopied`), and beside it the move's
 * total over every run (`moveRowsCopied`). A move of two batches killed once its first batch was
 * copied: the resume copies only the second batch's rows, and must not credit itself with the
 * first's (it reported the move's total as its own).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { admin } from '../admin/admin-cli-process';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { seededRowsIn, startMoverFixture, type MoverFixture } from './mover-fixture';

const USERS = 1000;
let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_resume_rows', 2);
  await f.seed(await f.init(2), 0, USERS);
}, 150_000);

afterAll(() => f?.close());

const rowsIn = (slots: string): number => seededRowsIn(slots, 0, USERS);

/** Moves `slots` to shard1 in batches of 32 slots, in a process killed (SIGKILL) once the first batch is copied. */
function killedAfterFirstBatch(slots: string): Promise<void> {
  const args = ['--import', 'tsx', join(__dirname, 'crash-child.ts'), f.catalogUrl, 'copied', slots, 'shard1', '', '32'];
  const child = spawn(process.execPath, args, { cwd: join(__dirname, '../../..'), stdio: 'ignore' });
  return new Promise((resolve, reject) => child.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`the mover was not killed (${signal})`)))));
}

test('resume (library): rowsCopied is the second batch\'s rows, moveRowsCopied both batches\'', async () => {
  await killedAfterFirstBatch('0-63');
  const result = await resumeMove({ catalog: f.catalogUrl });
  expect(result.error).toBeNull();
  expect(rowsIn('32-63')).toBeGreaterThan(0);
  expect(result).toMatchObject({ ok: true, status: 'done', rowsCopied: rowsIn('32-63'), moveRowsCopied: rowsIn('0-63') });
}, 60_000);

test('resume (CLI): the text names the rows of this run and the move\'s total apart', async () => {
  await killedAfterFirstBatch('64-127');
  const run = await admin('resume', '--catalog', f.catalogUrl);
  expect(run.code).toBe(0);
  expect(run.stdout).toContain(`done: ${rowsIn('96-127')} rows copied by this run (${rowsIn('64-127')} by the move in all)`);
}, 60_000);
