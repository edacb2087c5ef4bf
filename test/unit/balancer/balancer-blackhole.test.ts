import { Balancer, leastConnections, ManualClock, peakEwma, type Lease, type Strategy } from '../../../src/balancer';

const CALLERS = 32;
const SERVICE_MILLIS = 25;

/**
 * Closed loop on a manual clock: 32 callers over three instances answering in 25 ms; from t = 1 s
 * on, instance `hole` never answers a new call. Returns how many callers are stuck on it at the
 * given times.
 */
function callersStuckOnBlackhole(makeStrategy: (clock: ManualClock) => Strategy, atMillis: readonly number[]): number[] {
  const clock = new ManualClock(0);
  const balancer = new Balancer({
    clock,
    strategy: makeStrategy(clock),
    slowStart: false,
    outlierEjection: false,
    instances: ['a', 'b', 'hole'].map((id) => ({ id, address: `sim://${id}` })),
  });
  const blackholeFromMillis = 1_000;
  let stuck = 0;
  const call = (): void => {
    const lease: Lease = balancer.acquire();
    if (lease.instance.id === 'hole' && clock.monotonicNow() >= blackholeFromMillis) {
      stuck++; // never answered: this caller waits forever
      return;
    }
    clock.setTimeout(() => {
      lease.release(true);
      call();
    }, SERVICE_MILLIS);
  };
  for (let i = 0; i < CALLERS; i++) call();
  return atMillis.map((at) => {
    clock.advance(at - clock.monotonicNow());
    return stuck;
  });
}

describe('a blackholed instance', () => {
  it('does not attract more and more callers under peak EWMA: no more stuck than least-connections, and none after the first second', () => {
    const times = [2_000, 10_000, 50_000];
    const ewma = callersStuckOnBlackhole((clock) => peakEwma({ clock }), times);
    const lc = callersStuckOnBlackhole(() => leastConnections(), times);
    expect(ewma[0]).toBeGreaterThan(0);
    expect(ewma[2]).toBe(ewma[0]); // the age of its oldest call keeps it expensive
    expect(ewma[2]).toBeLessThanOrEqual(lc[2]!);
    expect(ewma[2]).toBeLessThan(CALLERS / 2);
  });
});
