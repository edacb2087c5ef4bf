import { ScanPacer, paceDelayMillis, pauseAfter } from '../../../src/admin/mover/scan-pacer';
import { ManualClock } from '../../../src/kernel/clock';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('scan pacer', () => {
  test('owes nothing until a slice is full, then the slice times the nice ratio', () => {
    expect(paceDelayMillis(9, { niceRatio: 1, sliceMillis: 10 })).toBe(0);
    expect(paceDelayMillis(10, { niceRatio: 1, sliceMillis: 10 })).toBe(10);
    expect(paceDelayMillis(12, { niceRatio: 3, sliceMillis: 10 })).toBe(36);
    expect(paceDelayMillis(500, { niceRatio: 0, sliceMillis: 10 })).toBe(0);
  });

  test('holds the stream back after a full slice for niceRatio times the slice, then starts a new slice', async () => {
    const clock = new ManualClock();
    const pacer = new ScanPacer({ clock, niceRatio: 2, sliceMillis: 10 });
    const passed: string[] = [];
    pacer.on('data', (c: Buffer) => passed.push(c.toString()));
    const done: boolean[] = [];
    pacer.write(Buffer.from('a'), () => done.push(true)); // slice starts
    await tick();
    clock.advance(12);
    pacer.write(Buffer.from('b'), () => done.push(true)); // 12 ms busy: 24 ms pause
    await tick();
    expect(passed).toEqual(['a', 'b']);
    expect(done).toEqual([true]);
    clock.advance(23);
    await tick();
    expect(done).toEqual([true]);
    clock.advance(1);
    await tick();
    expect(done).toEqual([true, true]);
    pacer.write(Buffer.from('c'), () => done.push(true)); // a new slice: no pause owed
    await tick();
    expect(done).toEqual([true, true, true]);
  });

  test('a finished statement pauses niceRatio times its time', async () => {
    const clock = new ManualClock();
    let over = false;
    void pauseAfter(20, { clock, niceRatio: 0.5, sliceMillis: 10 }).then(() => (over = true));
    clock.advance(9);
    await tick();
    expect(over).toBe(false);
    clock.advance(1);
    await tick();
    expect(over).toBe(true);
  });
});
