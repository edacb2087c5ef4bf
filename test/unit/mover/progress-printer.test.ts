import { PassThrough, Writable } from 'node:stream';
import { formatSeconds, progressPrinter } from '../../../src/admin/mover/progress-printer';
import { ManualClock } from '../../../src/kernel/clock';
import type { MoveProgress } from '../../../src/admin/mover/move-context';

const at = (phase: MoveProgress['phase'], rowsCopied: number): MoveProgress => ({ moveId: 1, batch: 1, batches: 2, source: 's0', target: 's1', phase, rowsCopied, rowsTotal: 1000 });

describe('progress printer off a terminal', () => {
  test('prints one JSON line per second, and at once on a phase change, with rate and ETA', () => {
    const clock = new ManualClock();
    const stream = new PassThrough();
    const lines: string[] = [];
    stream.on('data', (c: Buffer) => lines.push(...c.toString().trim().split('\n')));
    const printer = progressPrinter(stream, clock);
    printer.onProgress(at('capturing', 0));
    clock.advance(500);
    printer.onProgress(at('capturing', 100)); // within the second: not printed at once…
    clock.advance(500); // …but the second's timer prints the latest state
    printer.onProgress(at('capturing', 200));
    printer.onProgress(at('copied', 200)); // a new phase: printed at once
    printer.onProgress(at('copied', 200));
    printer.stop();
    const parsed = lines.map((l) => JSON.parse(l) as { phase: string; rowsCopied: number; rowsPerSecond: number; etaSeconds: number | null });
    expect(parsed.map((p) => [p.phase, p.rowsCopied])).toEqual([
      ['capturing', 0],
      ['capturing', 100],
      ['copied', 200],
    ]);
    expect(parsed[1]).toMatchObject({ rowsPerSecond: 100, etaSeconds: 9 });
  });

  test('rowsTotal is an estimate: past it the copied rows are the total and the ETA is unknown; after the copy, the rows copied', () => {
    const clock = new ManualClock();
    const stream = new PassThrough();
    const lines: string[] = [];
    stream.on('data', (c: Buffer) => lines.push(...c.toString().trim().split('\n')));
    const printer = progressPrinter(stream, clock);
    const estimate = (phase: MoveProgress['phase'], rowsCopied: number): MoveProgress => ({ ...at(phase, rowsCopied), rowsTotal: 150 });
    clock.advance(1000);
    printer.onProgress(estimate('capturing', 100));
    clock.advance(999);
    printer.onProgress(estimate('capturing', 209)); // more rows than the statistics said (written during the move)
    clock.advance(1); // printed by the second's timer
    printer.onProgress(estimate('copied', 209));
    printer.stop();
    const parsed = lines.map((l) => JSON.parse(l) as { rowsCopied: number; rowsTotal: number; rowsEstimated: number; etaSeconds: number | null });
    expect(parsed.map((p) => [p.rowsCopied, p.rowsTotal, p.rowsEstimated, p.etaSeconds])).toEqual([
      [100, 150, 150, 1],
      [209, 209, 150, null],
      [209, 209, 150, 0],
    ]);
    for (const p of parsed) expect(p.rowsCopied).toBeLessThanOrEqual(p.rowsTotal);
  });

  test('with no report from the mover (a long scan, the clean-up) the latest state is still printed once per second, until stop()', () => {
    const clock = new ManualClock();
    const stream = new PassThrough();
    const lines: string[] = [];
    stream.on('data', (c: Buffer) => lines.push(...c.toString().trim().split('\n')));
    const printer = progressPrinter(stream, clock);
    printer.onProgress(at('caught-up', 1000));
    for (let i = 0; i < 5; i++) clock.advance(1000);
    expect(lines).toHaveLength(6);
    expect(lines.map((l) => (JSON.parse(l) as { elapsedSeconds: number }).elapsedSeconds)).toEqual([0, 1, 2, 3, 4, 5]);
    printer.stop();
    clock.advance(5000);
    expect(lines).toHaveLength(6);
  });

  test('the clean-up reports rows cleaned, and its ETA is the rows left at the clean-up\'s rate (not a frozen 0)', () => {
    const clock = new ManualClock();
    const stream = new PassThrough();
    const lines: string[] = [];
    stream.on('data', (c: Buffer) => lines.push(...c.toString().trim().split('\n')));
    const printer = progressPrinter(stream, clock);
    printer.onProgress({ ...at('published', 1000), rowsCleaned: 0 });
    clock.advance(999);
    printer.onProgress({ ...at('published', 1000), rowsCleaned: 250 });
    clock.advance(1); // the second's line: 250 rows in 1 s, 750 left
    clock.advance(1000); // no report since: 250 rows in 2 s

    printer.stop();
    const parsed = lines.map((l) => JSON.parse(l) as { phase: string; rowsCleaned: number; etaSeconds: number | null });
    expect(parsed.map((p) => [p.phase, p.rowsCleaned, p.etaSeconds])).toEqual([
      ['published', 0, null],
      ['published', 250, 3],
      ['published', 250, 6],
    ]);
  });

  test("the clean-up's rate counts from its first report, even when that report was not printed; lines keep a one-second rhythm", () => {
    const clock = new ManualClock();
    const stream = new PassThrough();
    const lines: { at: number; line: string }[] = [];
    stream.on('data', (c: Buffer) => lines.push(...c.toString().trim().split('\n').map((line) => ({ at: clock.monotonicNow(), line }))));
    const printer = progressPrinter(stream, clock);
    const big = (rowsCleaned?: number): MoveProgress => ({ ...at('published', 100_000), ...(rowsCleaned === undefined ? {} : { rowsCleaned }) });
    printer.onProgress(big()); // the publish: printed at once
    clock.advance(500);
    printer.onProgress(big(0)); // the clean-up starts (within the second: not printed)
    for (let t = 0; t < 10; t++) {
      clock.advance(200);
      printer.onProgress(big((t + 1) * 200)); // 1,000 rows/s
    }
    printer.stop();
    const parsed = lines.map(({ at, line }) => ({ at, ...(JSON.parse(line) as { rowsCleaned?: number; etaSeconds: number | null }) }));
    const lastLine = parsed.at(-1)!;
    // 2,000 rows cleaned in 2 s: 98,000 left at 1,000 rows/s (counted from the first printed line, the rate looked twice as high).
    expect(lastLine).toMatchObject({ rowsCleaned: 2000, etaSeconds: 98 });
    const gaps = parsed.slice(1).map((p, i) => p.at - parsed[i]!.at);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(1000);
  });
});

describe('bar on a terminal', () => {
  test('an unknown ETA (no rate yet, or the copy done) shows as "–", never an infinite time ("NFs")', () => {
    let out = '';
    const stream = Object.assign(new Writable({ write: (chunk: Buffer, _e, cb) => ((out += chunk.toString()), cb()) }), { isTTY: true, columns: 200 });
    const printer = progressPrinter(stream as unknown as NodeJS.WritableStream & { isTTY: boolean });
    printer.onProgress({ moveId: 1, batch: 1, batches: 2, source: 'shard0', target: 'shard1', phase: 'capturing', rowsCopied: 0, rowsTotal: 1000 });
    printer.stop();
    expect(out).toMatch(/ETA –/);
    expect(out).not.toMatch(/NF/);
    expect(formatSeconds(42)).toBe('42s');
    expect(formatSeconds(185)).toBe('3m05s');
    expect(formatSeconds(3720)).toBe('1h02m');
  });
});
