import { ManualClock, type Clock } from '../../../src/kernel/clock';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { FakeClient } from './fake-redis-client';

/** A stand-in subscriber whose heartbeat PING is answered only when the test says so. */
class SlowPingClient extends FakeClient {
  private answers: (() => void)[] = [];
  ping(): Promise<unknown> {
    return new Promise((resolve) => this.answers.push(() => resolve('PONG')));
  }
  answer(): void {
    for (const a of this.answers.splice(0)) a();
  }
}

describe('L1 bound while the bus is silent, when this process stalled', () => {
  it('a watchdog that fires late (the event loop was blocked) gives the bus one more heartbeat; a bus that stays silent still loses L1', async () => {
    const manual = new ManualClock();
    let stall = 0;
    // Time that passes while the event loop is blocked: clocks move, timers do not run.
    const clock: Clock = { now: () => manual.now() + stall, monotonicNow: () => manual.monotonicNow() + stall, setTimeout: (cb, ms) => manual.setTimeout(cb, ms) };
    const sub = new SlowPingClient('ready');
    const bus = new InvalidationBus({ publisher: new FakeClient('ready'), subscriber: sub, clock, heartbeatIntervalMillis: 1_000 });
    await bus.start();
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } }, bus, clock, busSilenceMillis: 3_000 });
    try {
      await cache.set('p', 'k', 'v');
      stall += 3_500; // blocked 3.5 s: neither the heartbeat nor the watchdog could run
      manual.advance(3_000); // now they run, late: the heartbeat sends its PING, the watchdog finds 6.5 s of silence
      expect(cache.stats().bus.l1Suspended).toBe(false); // one more heartbeat first
      sub.answer();
      await new Promise((r) => setImmediate(r));
      expect(cache.peek('p', 'k')).toBe('v'); // the bus answered: L1 kept

      manual.advance(1_000); // next heartbeat: its PING is never answered
      manual.advance(3_000);
      expect(cache.stats().bus).toMatchObject({ l1Suspended: true, silences: 1 }); // no stall this time: the bound holds
      expect(cache.peek('p', 'k')).toBeUndefined();
    } finally {
      await cache.close();
      await bus.close();
    }
  });
});
