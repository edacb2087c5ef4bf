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
    throttle.write(Buffer.from('1\ta\n2\tb\\nc\n'), () => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([2]);
    expect(throttle.rows).toBe(2);
    expect(passed).toEqual(['1\ta\n2\tb\\nc\n']);
    expect(done).toBe(false); // 2 rows at 10 rows/s: 200 ms to wait
    clock.advance(199);
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    clock.advance(1);
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(true);
  });
});
