/**
 * The --dry-run estimate against a real move of a few thousand rows: throttled (the copy and the
 * clean-up both take rows / throttle), and unthrottled (the per-batch costs dominate). Bounds are
 * generous (a shared machine's load changes the real time), but the old estimate (rows / throttle,
 * or rows / 50,000) fell below them.
 */
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { moveHistory } from '../../../src/admin/mover/move-control';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_estimate', 2);
  await f.seed(await f.init(2), 0, 3000);
  for (const pool of f.pools) await pool.query('analyze users; analyze orders');
}, 150_000);

afterAll(() => f?.close());

async function estimateAndRun(slots: string, to: string, maxRowsPerSecond?: number, batchSlots?: number): Promise<{ estimated: number; actual: number; rows: number }> {
  const options = { catalog: f.catalogUrl, tables: TABLES, slots, to, ...(maxRowsPerSecond === undefined ? {} : { maxRowsPerSecond }), ...(batchSlots === undefined ? {} : { tuning: { batchSlots } }) };
  const plan = await moveSlots({ ...options, dryRun: true });
  expect(plan.error).toBeNull();
  const started = performance.now();
  const done = await moveSlots(options);
  const actual = (performance.now() - started) / 1000;
  expect(done.error).toBeNull();
  return { estimated: plan.plan!.estimatedSeconds, actual, rows: done.rowsCopied };
}

// The time is dominated by the throttle: copy and clean-up each take rows / 500 s (rows / throttle alone, the old estimate, was half of it).
test('throttled at 500 rows/s, the estimate counts the clean-up too: within 0.7x-3x of the real time', async () => {
  const { estimated, actual, rows } = await estimateAndRun('0-1023', 'shard1', 500);
  process.stdout.write(`throttled: ${rows} rows, estimated ${estimated} s, actual ${actual.toFixed(1)} s\n`);
  expect(rows).toBeGreaterThan(1500);
  expect(estimated).toBeGreaterThanOrEqual(0.7 * actual);
  expect(estimated).toBeLessThanOrEqual(3 * actual);
}, 90_000);

// Four batches of 256 slots: each batch's fixed costs dominate (rows / 50,000, the old estimate, said ~1 s).
test('unthrottled, the estimate counts each batch\'s fixed costs and the pacing: within 0.3x-4x of the real time', async () => {
  const { estimated, actual, rows } = await estimateAndRun('1024-2047', 'shard1', undefined, 256);
  process.stdout.write(`unthrottled: ${rows} rows, estimated ${estimated} s, actual ${actual.toFixed(1)} s\n`);
  expect(estimated).toBeGreaterThanOrEqual(0.3 * actual);
  // A quiet machine runs small batches faster than the assumed fixed costs: the estimate errs long.
  expect(estimated).toBeLessThanOrEqual(4 * actual);
}, 90_000);

// `moves` (and `status`) read the stored record: while a table copies, its rows copied so far are saved every LIVE_SAVE_MILLIS.
test('while a throttled copy runs, moves shows its rows copied so far, not 0', async () => {
  const before = await verifyShards({ catalog: f.catalogUrl, tables: TABLES });
  const firstTable = Object.entries(before.slots.orders!).filter(([slot]) => Number(slot) >= 2048 && Number(slot) <= 3071).reduce((n, [, c]) => n + c.rows, 0);
  expect(firstTable).toBeGreaterThan(0);
  const seen: { phase: string; rows: number }[] = [];
  let running = true;
  const move = moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '2048-3071', to: 'shard0', maxRowsPerSecond: 200 }).finally(() => (running = false));
  while (running) {
    const history = await moveHistory({ catalog: f.catalogUrl, limit: 1 });
    const batch = history.moves[0]?.batches[0];
    if (history.moves[0]?.status === 'open' && batch !== undefined) seen.push({ phase: batch.phase, rows: batch.rowsCopied });
    await new Promise((resolve) => setTimeout(resolve, 250)); // polling a running process, not waiting for time to pass
  }
  const done = await move;
  expect(done.error).toBeNull();
  expect(done.rowsCopied).toBeGreaterThan(400);
  // Saved only when a table finished, the copy showed no count but the first table's rows (orders, copied first) between 0 and the total.
  const partial = seen.filter((s) => s.phase === 'capturing' && s.rows > 0 && s.rows < done.rowsCopied && s.rows !== firstTable).map((s) => s.rows);
  expect(partial.length).toBeGreaterThan(0);
}, 90_000);
