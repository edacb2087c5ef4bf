/**
 * `abort` of a move one of whose shards does not answer (its PostgreSQL server stopped, or frozen
 * with SIGSTOP). Before, the abort opened sessions on both shards of every batch first and failed
 * on the dead one having changed nothing: the source kept capturing every write to the moving
 * slots into its change log, kept the capture triggers, and (once switched) refused those writes.
 * Now it does everything on the shards that answer, leaves the rest marked on the batch, stays
 * open with `E_MOVE_FAILED` (`context.reason` `abort-unfinished`, the shards named), `resume`
 * refuses the move, and `abort` again finishes it once the shard answers. A published batch is not
 * cleaned up (its source's rows deleted) while its target, their new owner, is silent. Three shards; the
 * catalog lives on shard0's server, so the silent one is shard1 or shard2.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { addShard, moveSlots } from '../../../src/admin/mover/mover-operations';
import { abortMove, moveHistory, resumeMove } from '../../../src/admin/mover/move-control';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { parseSlotRanges } from '../../../src/admin/mover/slot-ranges';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import { ErrorCodes } from '../../../src/kernel/errors';
import { slotOf } from '../../../src/cluster/slot-hash';
import type { Topology } from '../../../src/cluster/topology';
import { appStatement } from './app-statement';
import { freeze } from '../replication/replication-fault-fixture';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { latestTopology } from './served-rows';
import { within } from './within-deadline';

let f: MoverFixture;
const repoRoot = join(__dirname, '../../..');

beforeAll(async () => {
  f = await startMoverFixture('abort_unreachable', 3);
  await f.seed(await f.init(2), 0, 300);
}, 120_000);

afterAll(() => f?.close());

/** What a shard still holds of a move: slot_move rows, change-log entries, capture triggers, its hidden slots and required version. */
async function moveState(i: number): Promise<{ slotMove: number; log: number; triggers: number; hidden: string | null; required: number }> {
  const pool = f.pools[i]!;
  const one = async (sql: string): Promise<number> => (await pool.query<{ n: number }>(sql)).rows[0]!.n;
  const guard = (await pool.query<{ hidden: string | null; required: number }>('select hidden::text as hidden, required_version as required from kysely_scale.shard_guard')).rows[0]!;
  return {
    slotMove: await one('select count(*)::int as n from kysely_scale.slot_move'),
    log: await one('select count(*)::int as n from kysely_scale.change_log'),
    triggers: await one(`select count(*)::int as n from pg_trigger where tgname = 'zz_kysely_scale_capture'`),
    hidden: guard.hidden === null || !guard.hidden.includes('1') ? null : guard.hidden,
    required: guard.required,
  };
}

/** Shard `i` holds nothing of a move and requires at most `version`. */
async function expectClean(i: number, version: number): Promise<void> {
  const { required, ...rest } = await moveState(i);
  expect([i, rest]).toEqual([i, { slotMove: 0, log: 0, triggers: 0, hidden: null }]);
  expect(required).toBeLessThanOrEqual(version);
}

/** A statement of an app session at `version` on shard `i`: its row count, or its SQLSTATE. */
function asApp(i: number, version: number, sql: string, values: unknown[]): Promise<string> {
  return appStatement(f.appUrl(i), version, sql, values);
}

/** Rows of users and orders on shard `i` whose key is in `slots`. */
async function rowsIn(i: number, slots: readonly number[]): Promise<number> {
  const wanted = new Set(slots);
  let n = 0;
  for (const table of ['users', 'orders'] as const) {
    const key = table === 'users' ? 'id' : 'user_id';
    const { rows } = await f.pools[i]!.query<{ k: string }>(`select ${key}::text as k from ${table}`);
    n += rows.filter((r) => wanted.has(slotOf(Number(r.k)))).length;
  }
  return n;
}

/** Every seeded user exactly once, over all shards. */
async function expectAllUsersOnce(): Promise<void> {
  const users = await f.rowsOf('users');
  expect(users).toHaveLength(300);
  expect(new Set(users.map((u) => u.key)).size).toBe(300);
  expect(await f.rowsOf('orders')).toHaveLength(600);
}

/** The abort left the move open naming `shard` (and only it) as the one holding state, as `role`. */
function expectUnfinished(result: MoveResult, shard: string, role: 'source' | 'target'): void {
  expect(result).toMatchObject({ ok: false, status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { reason: 'abort-unfinished', shards: [shard] } } });
  expect(result.abortLeft!.length).toBeGreaterThan(0);
  for (const left of result.abortLeft!) expect(left).toMatchObject({ shard, role });
  expect(Object.keys(result.error!.context.unreachable as object)).toEqual([shard]);
  expect(result.error!.message).toContain(`run abort again once that shard answers`);
}

/** The first user in `slots`. */
function userIn(slots: readonly number[]): number {
  return [...Array(300).keys()].find((id) => slots.includes(slotOf(id)))!;
}

/** `slots`' orders and users rows among the seeded ones: the copy is past the orders table (copied first: tables go in name order) once more rows than its were copied. */
function ordersIn(slots: readonly number[]): number {
  return [...Array(300).keys()].filter((id) => slots.includes(slotOf(id))).length * 2;
}

test('the new shard of an add stopped during the copy: abort rolls the sources back (writes to the moving slots go through, nothing captured), stays open naming it; abort again once it is back deletes its copies', async () => {
  let plan: { source: string; slots: number[] } | undefined;
  let stopping: Promise<void> | undefined;
  const added = await addShard({
    catalog: f.catalogUrl,
    tables: TABLES,
    shard: { id: 'shard2', primary: f.shards[2]!.primaryUrl },
    maxRowsPerSecond: 60,
    tuning: { niceRatio: 0, probeSlowMillis: 0 },
    onPlan: (p) => (plan = { source: p.batches[0]!.source, slots: parseSlotRanges(p.batches[0]!.slots, 4096) }),
    // Stopped while the users table copies: the orders table's copies are committed there.
    onProgress: (p) => {
      if (p.batch === 1 && p.phase === 'capturing' && p.rowsCopied > ordersIn(plan!.slots)) stopping ??= f.cluster.shards[2]!.primary.stop();
    },
  });
  await stopping;
  expect(stopping).toBeDefined();
  expect(added).toMatchObject({ ok: false, status: 'open' });
  const source = Number(plan!.source.replace('shard', ''));
  expect((await moveState(source)).triggers).toBe(2); // the source still captures: what the abort must undo

  const started = performance.now();
  const aborted = await within(30_000, 'abort with the target stopped', abortMove({ catalog: f.catalogUrl }));
  console.log(JSON.stringify({ abortTargetStopped: { ms: Math.round(performance.now() - started), error: aborted.error?.message } }));
  expectUnfinished(aborted, 'shard2', 'target');
  // Why, as the server answered a fresh connection (named, its password hidden).
  expect(aborted.error!.message).toMatch(/^The abort of move \d+ could not reach shard "shard2" \(shard2 postgres:\/\/postgres@127\.0\.0\.1:\d+\/abort_unreachable: connect ECONNREFUSED /);
  const latest = await latestTopology(f.catalogUrl);
  for (const i of [0, 1]) await expectClean(i, latest.version);
  // The sources take writes to the moving slots again, at the latest version, uncaptured.
  const user = userIn(plan!.slots);
  expect(await asApp(source, latest.version, 'update users set score = score + 1 where id = $1', [user])).toBe('1 row(s)');
  expect(await asApp(source, latest.version, 'select id from users where id = $1', [user])).toBe('1 row(s)');
  expect((await moveState(source)).log).toBe(0);
  // status names what is left, and where; resume is refused.
  const history = await moveHistory({ catalog: f.catalogUrl, limit: 1 });
  expect(history.moves[0]!.status).toBe('open');
  expect(history.moves[0]!.batches[0]).toMatchObject({ phase: 'aborted', left: ['shard2'] });
  expect(history.moves[0]!.batches[1]).toMatchObject({ phase: 'aborted' });
  expect(history.moves[0]!.batches[1]!.left).toBeUndefined();
  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed).toMatchObject({ ok: false, status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { reason: 'abort-unfinished', shards: ['shard2'] } } });
  expect(resumed.error!.message).toMatch(/run abort again to finish rolling it back once "shard2" answers/);

  await f.cluster.shards[2]!.primary.start();
  expect(await rowsIn(2, plan!.slots)).toBeGreaterThan(0); // the copies the abort could not delete
  expect((await moveState(2)).hidden).not.toBeNull();
  const finished = await abortMove({ catalog: f.catalogUrl });
  expect(finished).toMatchObject({ ok: true, status: 'aborted', rolledBack: 1, completed: 0, error: null });
  expect(await rowsIn(2, plan!.slots)).toBe(0);
  for (const i of [0, 1, 2]) await expectClean(i, latest.version);
  expect(await verifyShards({ catalog: f.catalogUrl, tables: TABLES })).toMatchObject({ ok: true, misplaced: [] });
  await expectAllUsersOnce();
  expect((await f.pools[source]!.query('select score from users where id = $1', [user])).rows[0].score).toBe(1);
}, 120_000);

/** Runs the mover in a child process that kills itself (SIGKILL) when batch 1 reaches `point`. */
function crashAt(point: string, slots: string, to: string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'crash-child.ts'), f.catalogUrl, point, slots, to], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`the mover did not die at ${point}: ${output}`))));
  });
}

test("the source switched (the mover killed at 'switched'), the target stopped: the catalog settles the version (unpublished, and no publish of it can commit after the abort's claim): the source is switched back and takes writes; the target is cleaned once it is back", async () => {
  const start = await latestTopology(f.catalogUrl);
  const slots = start.slotsOf('shard0').slice(0, 64);
  await crashAt('switched', `${slots[0]}-${slots[63]}`, 'shard2');
  const user = userIn(slots);
  // The dead mover's switch: the source hides the slots and requires a version nobody published.
  const switched = await moveState(0);
  expect(switched).toMatchObject({ required: start.version + 1 });
  expect(switched.hidden).not.toBeNull();
  expect(await asApp(0, start.version, 'update users set score = score + 1 where id = $1', [user])).toMatch(/^error KS00[12]$/);
  await f.cluster.shards[2]!.primary.stop();

  const aborted = await within(30_000, 'abort with the target stopped', abortMove({ catalog: f.catalogUrl }));
  expectUnfinished(aborted, 'shard2', 'target');
  expect(aborted.abortLeft![0]!.holds).toContain(`the cutover's switch (version ${start.version + 1} required`);
  const latest = await latestTopology(f.catalogUrl);
  expect(latest.version).toBe(start.version);
  await expectClean(0, start.version);
  expect(await asApp(0, start.version, 'update users set score = score + 1 where id = $1', [user])).toBe('1 row(s)');
  expect(await asApp(0, start.version, 'select id from users where id = $1', [user])).toBe('1 row(s)');
  expect((await moveState(0)).log).toBe(0);
  expect((await resumeMove({ catalog: f.catalogUrl })).error).toMatchObject({ context: { reason: 'abort-unfinished', shards: ['shard2'] } });

  await f.cluster.shards[2]!.primary.start();
  expect(await rowsIn(2, slots)).toBeGreaterThan(0);
  const finished = await abortMove({ catalog: f.catalogUrl });
  expect(finished).toMatchObject({ ok: true, status: 'aborted', rolledBack: 1, error: null });
  expect(await rowsIn(2, slots)).toBe(0);
  for (const i of [0, 1, 2]) await expectClean(i, start.version);
  for (const slot of slots) expect((await latestTopology(f.catalogUrl)).shardForSlot(slot).id).toBe('shard0');
  expect(await verifyShards({ catalog: f.catalogUrl, tables: TABLES })).toMatchObject({ ok: true, misplaced: [] });
  await expectAllUsersOnce();
}, 120_000);

test('the source frozen (SIGSTOP) during the copy: abort fails fast on it, deletes the copies on the target and stays open naming the source; abort again once it answers releases the source', async () => {
  const start: Topology = await latestTopology(f.catalogUrl);
  const slots = start.slotsOf('shard1').slice(0, 512);
  let thaw: (() => void) | undefined;
  try {
    const moved = await within(60_000, 'a move whose source froze', moveSlots({
      catalog: f.catalogUrl,
      tables: TABLES,
      slots: `${slots[0]}-${slots[511]}`,
      to: 'shard2',
      maxRowsPerSecond: 60,
      tuning: { statementTimeoutMillis: 1000, niceRatio: 0, probeSlowMillis: 0 },
      onProgress: (p) => {
        if (p.phase === 'capturing' && p.rowsCopied > ordersIn(slots)) thaw ??= freeze(f.cluster.shards[1]!.primary);
      },
    }));
    expect(thaw).toBeDefined();
    expect(moved).toMatchObject({ ok: false, status: 'open', error: { code: ErrorCodes.MOVE_FAILED, context: { shard: 'shard1' } } });
    expect(await rowsIn(2, slots)).toBeGreaterThan(0);

    const started = performance.now();
    const aborted = await within(20_000, 'abort with the source frozen', abortMove({ catalog: f.catalogUrl, tuning: { statementTimeoutMillis: 1000 } }));
    const ms = Math.round(performance.now() - started);
    console.log(JSON.stringify({ abortSourceFrozen: { ms, error: aborted.error?.message } }));
    // One deadline for the frozen shard (1 s), asked once however many steps need it.
    expect(ms).toBeLessThan(6000);
    expectUnfinished(aborted, 'shard1', 'source');
    expect(await rowsIn(2, slots)).toBe(0);
    await expectClean(2, start.version);
    expect((await moveHistory({ catalog: f.catalogUrl, limit: 1 })).moves[0]!.batches[0]).toMatchObject({ phase: 'aborted', left: ['shard1'] });
  } finally {
    thaw?.();
  }
  // Back, the source still holds the move's capture: the abort left it for now.
  expect(await moveState(1)).toMatchObject({ triggers: 2 });
  expect((await moveState(1)).slotMove).toBeGreaterThan(0);
  const finished = await abortMove({ catalog: f.catalogUrl });
  expect(finished).toMatchObject({ ok: true, status: 'aborted', rolledBack: 1, error: null });
  for (const i of [0, 1, 2]) await expectClean(i, start.version);
  expect(await verifyShards({ catalog: f.catalogUrl, tables: TABLES })).toMatchObject({ ok: true, misplaced: [] });
  await expectAllUsersOnce();
}, 120_000);

test('a published batch (the mover killed before its clean-up) whose target is stopped: abort leaves the source\'s rows, which may be the only copy, and names the target; abort again once it is back cleans the source', async () => {
  const start = await latestTopology(f.catalogUrl);
  const slots = start.slotsOf('shard0').slice(0, 64);
  await crashAt('published', `${slots[0]}-${slots[63]}`, 'shard2');
  const published = await latestTopology(f.catalogUrl);
  expect(published.version).toBe(start.version + 1);
  const onSource = await rowsIn(0, slots);
  expect(onSource).toBeGreaterThan(0);
  await f.cluster.shards[2]!.primary.stop();

  const aborted = await within(30_000, 'abort with the target of a published batch stopped', abortMove({ catalog: f.catalogUrl }));
  expectUnfinished(aborted, 'shard2', 'target');
  expect(aborted.completed).toBe(0);
  expect(aborted.abortLeft![0]!.holds).toContain('the clean-up of "shard0" waits for it');
  // Before (review 81, L2) the source's rows were deleted while the target, their only other copy, was silent.
  expect(await rowsIn(0, slots)).toBe(onSource);
  expect((await moveHistory({ catalog: f.catalogUrl, limit: 1 })).moves[0]!.batches[0]).toMatchObject({ phase: 'published', left: ['shard2'] });
  expect((await resumeMove({ catalog: f.catalogUrl })).error).toMatchObject({ context: { reason: 'abort-unfinished', shards: ['shard2'] } });

  await f.cluster.shards[2]!.primary.start();
  const finished = await abortMove({ catalog: f.catalogUrl, tuning: { cleanupDelayMillis: 0 } });
  expect(finished).toMatchObject({ ok: true, status: 'aborted', rolledBack: 0, completed: 1, error: null });
  expect(await rowsIn(0, slots)).toBe(0);
  expect(await rowsIn(2, slots)).toBe(onSource);
  for (const i of [0, 1, 2]) await expectClean(i, published.version);
  expect(await verifyShards({ catalog: f.catalogUrl, tables: TABLES })).toMatchObject({ ok: true, misplaced: [] });
  await expectAllUsersOnce();
}, 120_000);
