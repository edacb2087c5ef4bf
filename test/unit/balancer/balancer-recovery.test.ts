import { Balancer, ManualClock, peakEwma, SLOW_START_DEFAULTS, type Lease } from '../../../src/balancer';

const CALLERS = 32;
const LATENCY_MILLIS = 150;

/**
 * Closed loop on a manual clock: 32 callers over a, b, c, d answering in 150 ms under peak EWMA
 * with the default slow start. d fails every call in 0.1 ms from 10 s to 20 s; health checks
 * (fall 3, rise 2, every 2 s) mark it down at 16 s and up again at 24 s. Returns d's share of the
 * picks in each [from, to) window of milliseconds.
 */
function recoveredShare(windows: ReadonlyArray<readonly [number, number]>): number[] {
  const clock = new ManualClock(0);
  const balancer = new Balancer({
    clock,
    strategy: peakEwma({ clock }),
    outlierEjection: false,
    instances: ['a', 'b', 'c', 'd'].map((id) => ({ id, address: `sim://${id}` })),
  });
  const picks: Array<{ at: number; id: string }> = [];
  const call = (): void => {
    const lease: Lease = balancer.acquire();
    const at = clock.monotonicNow();
    picks.push({ at, id: lease.instance.id });
    const fails = lease.instance.id === 'd' && at >= 10_000 && at < 20_000;
    clock.setTimeout(() => {
      lease.release(!fails);
      call();
    }, fails ? 0.1 : LATENCY_MILLIS);
  };
  for (let i = 0; i < CALLERS; i++) call();
  clock.advance(16_000);
  balancer.setHealth('d', false);
  clock.advance(8_000);
  balancer.setHealth('d', true);
  clock.advance(Math.max(...windows.map(([, to]) => to)) - clock.monotonicNow());
  return windows.map(([from, to]) => {
    const inWindow = picks.filter((p) => p.at >= from && p.at < to);
    return inWindow.filter((p) => p.id === 'd').length / inWindow.length;
  });
}

describe('a backend that recovers', () => {
  it('ramps up during the slow-start window and has its fair share when the window ends, under peak EWMA', () => {
    const back = 24_000;
    const end = back + SLOW_START_DEFAULTS.windowMillis;
    const [during, after] = recoveredShare([
      [back, end],
      [end, end + 6_000],
    ]);
    expect(during).toBeGreaterThan(0);
    expect(during).toBeLessThan(0.25);
    expect(after).toBeGreaterThan(0.8 * 0.25); // fair share: 1 of 4
    expect(after).toBeLessThan(1.2 * 0.25);
  });
});
