import { CopyThrottle, throttleDelayMillis } from '../../../src/admin/mover/copy-throttle';
import { ManualClock } from '../../../src/kernel/clock';

describe('copy throttle', () => {
  test('waits just long enough to keep the average rate', () => {
    expect(throttleDelayMillis(1000, 0, undefined)).toBe(0);
    expect(throttleDelayMillis(1000, 0, 1000)).toBe(1000);
    expect(throttleDelayMillis(1000, 400, 1000)).toBe(600);
    expect(throttleDelayMillis(1000, 2000, 1000)).toBe(0);
  });

  test('counts COPY rows by newline and holds the stream back until the clock allows more', async () => {
    const clock = new ManualClock();
    const seen: number[] = [];
    const throttle = new CopyThrottle(clock, 10, (n) => seen.push(n));
    const passed: string[] = [];
    throttle.on('data', (chunk: Buffer) => passed.push(chunk.toString()));
    let done = false;
    const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
    throttle.write(Buffer.from('1\ta\n2\tb\\nc\n'), () => (done = true));
    await tick();
    // 10 rows/s passes one row per 100 ms: the chunk's second row waits for its turn.
    expect(seen).toEqual([1]);
    expect(passed).toEqual(['1\ta\n']);
    clock.advance(100);
    await tick();
    expect(seen).toEqual([1, 1]);
    expect(throttle.rows).toBe(2);
    expect(passed).toEqual(['1\ta\n', '2\tb\\nc\n']);
    expect(done).toBe(false); // 2 rows at 10 rows/s: 200 ms in all
    clock.advance(99);
    await tick();
    expect(done).toBe(false);
    clock.advance(1);
    await tick();
    expect(done).toBe(true);
  });

  test('a chunk of many rows passes in slices of about 20 ms of the rate, not at once', async () => {
    const clock = new ManualClock();
    const seen: number[] = [];
    const throttle = new CopyThrottle(clock, 1000, (n) => seen.push(n)); // 20 rows per slice
    const rows = Array.from({ length: 100 }, (_, i) => `${i}\tx\n`).join('');
    const passed: string[] = [];
    throttle.on('data', (chunk: Buffer) => passed.push(chunk.toString()));
    throttle.write(Buffer.from(rows));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([20]);
    for (let i = 0; i < 4; i++) {
      clock.advance(20);
      await new Promise((r) => setImmediate(r));
    }
    expect(seen).toEqual([20, 20, 20, 20, 20]);
    expect(passed.join('')).toBe(rows); // every byte, in order
  });

  test('without a limit a chunk passes whole', async () => {
    const seen: number[] = [];
    const throttle = new CopyThrottle(new ManualClock(), undefined, (n) => seen.push(n));
    let done = false;
    throttle.on('data', () => undefined);
    throttle.write(Buffer.from('a\nb\nc\n'), () => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([3]);
    expect(done).toBe(true);
  });
});
