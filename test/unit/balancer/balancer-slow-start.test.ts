import { Balancer, ManualClock, roundRobin } from '../../../src/balancer';
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
});
