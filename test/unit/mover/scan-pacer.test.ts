import { MAX_YIELD_MILLIS, ScanPacer, yieldAfter } from '../../../src/admin/mover/scan-pacer';
import { ManualClock } from '../../../src/kernel/clock';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('scan pacer', () => {
  test('holds the stream back after a full slice for niceRatio times the slice, then starts a new slice', async () => {
    const clock = new ManualClock();
    const pacer = new ScanPacer({ clock, niceRatio: 2, sliceMillis: 10, probeSlowMillis: 3 });
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
    void yieldAfter(20, { clock, niceRatio: 0.5, sliceMillis: 10, probeSlowMillis: 3 }).then(() => (over = true));
    clock.advance(9);
    await tick();
    expect(over).toBe(false);
    clock.advance(1);
    await tick();
    expect(over).toBe(true);
  });

  test('while the probe is slow it keeps waiting, doubling the wait, at most MAX_YIELD_MILLIS more', async () => {
    const clock = new ManualClock();
    const probes: number[] = [];
    const latencies = [9, 9, 1];
    let over = false;
    const probe = async (): Promise<number> => {
      probes.push(clock.monotonicNow());
      return latencies.shift() ?? 9;
    };
    const t0 = clock.monotonicNow();
    void yieldAfter(10, { clock, niceRatio: 1, sliceMillis: 10, probeSlowMillis: 3, probe }).then(() => (over = true));
    for (let i = 0; i < 10; i++) {
      clock.advance(10);
      await tick();
    }
    // 10 ms nice pause, probe slow: 10 ms, slow again: 20 ms, then fast: done at 40 ms.
    expect(probes.map((t) => t - t0)).toEqual([10, 20, 40]);
    expect(over).toBe(true);

    const always = new ManualClock();
    let done = false;
    void yieldAfter(10, { clock: always, niceRatio: 0, sliceMillis: 10, probeSlowMillis: 3, probe: async () => 50 }).then(() => (done = true));
    await tick();
    for (let i = 0; i < MAX_YIELD_MILLIS / 10 - 1; i++) {
      always.advance(10);
      await tick();
    }
    expect(done).toBe(false);
    always.advance(10);
    await tick();
    await tick();
    expect(done).toBe(true);
  });

  test('the probes\' own time counts against MAX_YIELD_MILLIS, and the last probe gets only what is left', async () => {
    const clock = new ManualClock();
    const deadlines: number[] = [];
    // A saturated server: every probe takes 300 ms of clock time (or its deadline, if shorter) and is slow.
    const probe = (deadlineMillis: number): Promise<number> => {
      deadlines.push(deadlineMillis);
      const took = Math.min(300, deadlineMillis);
      return new Promise((resolve) => clock.setTimeout(() => resolve(took), took));
    };
    const t0 = clock.monotonicNow();
    let doneAt: number | undefined;
    void yieldAfter(10, { clock, niceRatio: 0, sliceMillis: 10, probeSlowMillis: 3, probe }).then(() => (doneAt = clock.monotonicNow() - t0));
    for (let i = 0; i < 300 && doneAt === undefined; i++) {
      await tick();
      clock.advance(10);
    }
    await tick();
    // probe 300, wait 10, probe 300, wait 20, probe 300, wait 40, then a probe cut to the 30 ms left (the old loop counted only its waits: 7 probes, 3 s).
    expect(deadlines).toEqual([1000, 690, 370, 30]);
    expect(doneAt).toBe(MAX_YIELD_MILLIS);
  });

  test('a stop signal fired while a probe runs ends the yield when the probe answers, not after the next wait (review 76, O1)', async () => {
    const clock = new ManualClock();
    const stop = new AbortController();
    const reason = new Error('operator lock lost');
    // A slow probe, during which the command's operator lock is lost.
    const probe = async (): Promise<number> => {
      stop.abort(reason);
      return 900;
    };
    let outcome: unknown = 'pending';
    void yieldAfter(10, { clock, niceRatio: 0, sliceMillis: 500, probeSlowMillis: 3, probe, signal: stop.signal }).then(
      () => (outcome = 'returned'),
      (error: unknown) => (outcome = error),
    );
    await tick();
    await tick();
    // No clock time passed: the old code waited here for the 500 ms step.
    expect(outcome).toBe(reason);
  });
});
