import { ManualClock } from '../../../src/kernel/clock';
import { CheckLoop } from '../../../src/replication/check-loop';

/** A check that stays pending until released by the test. */
function controllable() {
  let calls = 0;
  let release: (() => void) | undefined;
  const check = () => {
    calls++;
    return new Promise<void>((resolve) => (release = resolve));
  };
  return { check, calls: () => calls, finish: () => release?.() };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('check loop', () => {
  test('checks at start, then an interval after each check ends; a hung check holds back only its own loop', async () => {
    const clock = new ManualClock();
    const hung = controllable();
    const healthy = controllable();
    const a = new CheckLoop(clock, () => 100, hung.check);
    const b = new CheckLoop(clock, () => 100, healthy.check);
    a.start();
    b.start();
    expect([hung.calls(), healthy.calls()]).toEqual([1, 1]);
    healthy.finish();
    await settle();
    for (let i = 0; i < 5; i++) {
      clock.advance(100);
      healthy.finish();
      await settle();
    }
    // The healthy server was checked every 100 ms; the hung one is still on its first check.
    expect(healthy.calls()).toBe(6);
    expect(hung.calls()).toBe(1);
    hung.finish();
    await settle();
    clock.advance(100);
    expect(hung.calls()).toBe(2);
    a.stop();
    b.stop();
  });

  test('a check asked for while one runs joins it; a stopped loop schedules nothing', async () => {
    const clock = new ManualClock();
    const c = controllable();
    const loop = new CheckLoop(clock, () => 50, c.check);
    const first = loop.now();
    const second = loop.now();
    expect(c.calls()).toBe(1);
    expect(loop.running).toBe(true);
    c.finish();
    await Promise.all([first, second]);
    loop.stop();
    clock.advance(1000);
    expect(c.calls()).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  test('the interval is read before each wait (a server that is down is checked more often); 0 never schedules', async () => {
    const clock = new ManualClock();
    const c = controllable();
    let interval = 1000;
    const loop = new CheckLoop(clock, () => interval, c.check);
    loop.start();
    interval = 200;
    c.finish();
    await settle();
    clock.advance(200);
    expect(c.calls()).toBe(2);
    interval = 0;
    c.finish();
    await settle();
    expect(clock.pendingTimers).toBe(0);
    const manual = new CheckLoop(clock, () => 0, c.check);
    manual.start();
    expect(c.calls()).toBe(2);
    loop.stop();
  });
});
