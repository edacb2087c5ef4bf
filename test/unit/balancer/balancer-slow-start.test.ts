import {
  Balancer,
  consistentHash,
  costAware,
  dynamicSelector,
  leastConnections,
  loadAdjustedLatency,
  ManualClock,
  peakEwma,
  powerOfTwoChoices,
  resourceAware,
  roundRobin,
  seededRandom,
  smoothWeightedRoundRobin,
  weightedRandom,
  type Strategy,
} from '../../../src/balancer';
import { makeBalancer } from './balancer-fixture';

describe('Balancer slow start', () => {
  it('slow-starts an added instance: its effective weight ramps over the window', () => {
    const { clock, balancer } = makeBalancer({ slowStart: { windowMillis: 1000, minWeightPercent: 10 } });
    balancer.addInstance({ id: 'd', address: 'sim://d', weight: 2 });
    balancer.acquire().release(true);
    expect(balancer.instance('d')?.effectiveWeight).toBeCloseTo(0.2, 6); // min 10%
    clock.advance(500);
    balancer.acquire().release(true);
    expect(balancer.instance('d')?.effectiveWeight).toBeCloseTo(1, 6); // 50% of 2
    clock.advance(500);
    balancer.acquire().release(true);
    expect(balancer.instance('d')?.effectiveWeight).toBe(2);
    expect(balancer.instance('a')?.effectiveWeight).toBe(1);
  });

  it('applies to an instance back from ejection', () => {
    const clock = new ManualClock(0);
    const b = new Balancer({
      clock,
      strategy: roundRobin(),
      slowStart: { windowMillis: 1000, minWeightPercent: 10 },
      outlierEjection: { consecutiveFailures: 1, baseEjectionTimeMillis: 100, maxEjectedPercent: 100 },
      instances: [{ id: 'a', address: 'x' }, { id: 'b', address: 'y' }],
    });
    let lease = b.acquire();
    while (lease.instance.id !== 'a') {
      lease.release(true);
      lease = b.acquire();
    }
    lease.release(false);
    clock.advance(100);
    b.acquire().release(true);
    expect(b.instance('a')?.effectiveWeight).toBeCloseTo(0.1, 9);
    clock.advance(500);
    b.acquire().release(true);
    expect(b.instance('a')?.effectiveWeight).toBeCloseTo(0.5, 9);
  });

  /** Share of `picks` calls (released at once) that go to `id`. */
  const shareOf = (balancer: Balancer, id: string, picks: number): number => {
    let hits = 0;
    for (let i = 0; i < picks; i++) {
      const lease = balancer.acquire({ key: `k${i}` });
      if (lease.instance.id === id) hits++;
      lease.release(true);
    }
    return hits / picks;
  };

  const strategies: Array<[string, (clock: ManualClock) => Strategy]> = [
    ['round-robin', () => roundRobin()],
    ['smooth WRR', () => smoothWeightedRoundRobin()],
    ['random', () => weightedRandom({ random: seededRandom(5) })],
    ['least-connections', () => leastConnections()],
    ['power of two', () => powerOfTwoChoices({ random: seededRandom(5) })],
    ['peak EWMA', (clock) => peakEwma({ clock })],
    ['consistent hash', () => consistentHash({ random: seededRandom(5) })],
    ['resource-aware', () => resourceAware()],
    ['load-adjusted latency', () => loadAdjustedLatency()],
    ['cost-aware', () => costAware()],
    ['dynamic', (clock) => dynamicSelector({ clock })],
  ];

  it.each(strategies)('holds a warming instance to at most its weight factor × its fair share under %s', (_name, make) => {
    const clock = new ManualClock(0);
    const balancer = new Balancer({
      clock,
      strategy: make(clock),
      slowStart: { windowMillis: 10_000, minWeightPercent: 10 },
      instances: ['a', 'b', 'c', 'd'].map((id) => ({ id, address: id })),
    });
    balancer.addInstance({ id: 'new', address: 'new' }); // fair share 1/5
    expect(shareOf(balancer, 'new', 2_000)).toBeLessThanOrEqual(0.1 * 0.2 + 0.002);
    clock.advance(5_000); // factor 0.5
    expect(shareOf(balancer, 'new', 2_000)).toBeLessThanOrEqual(0.5 * 0.2 + 0.002);
  });

  it('ramps a warming instance under round-robin from its minimum share to its fair share over the window', () => {
    const clock = new ManualClock(0);
    const balancer = new Balancer({ clock, strategy: roundRobin(), instances: ['a', 'b', 'c', 'd'].map((id) => ({ id, address: id })) });
    balancer.addInstance({ id: 'new', address: 'new' }); // SLOW_START_DEFAULTS: 10 s, from 10%
    expect(shareOf(balancer, 'new', 2_000)).toBeCloseTo(0.02, 2);
    clock.advance(5_000);
    expect(shareOf(balancer, 'new', 2_000)).toBeCloseTo(0.1, 2);
    clock.advance(5_000);
    expect(shareOf(balancer, 'new', 2_000)).toBeCloseTo(0.2, 2);
  });
});
