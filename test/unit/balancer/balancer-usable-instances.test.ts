import { NoInstanceAvailableError, roundRobin } from '../../../src/balancer';
import { keyedBalancer, makeBalancer, record } from './balancer-fixture';

describe('Balancer health and panic mode', () => {
  it('skips unhealthy instances and enters panic mode when none is healthy', () => {
    const { balancer } = makeBalancer({ strategy: roundRobin() });
    const panic = record(balancer, 'panic');
    balancer.setHealth('a', false);
    balancer.setHealth('b', false);
    for (let i = 0; i < 3; i++) {
      const l = balancer.acquire();
      expect(l.instance.id).toBe('c');
      l.release(true);
    }
    balancer.setHealth('c', false);
    const seen = new Set(Array.from({ length: 3 }, () => { const l = balancer.acquire(); l.release(true); return l.instance.id; }));
    expect(seen.size).toBe(3);
    expect(panic).toEqual([{ active: true, usable: 0, total: 3 }]);
    expect(balancer.stats().panic).toBe(true);
    balancer.setHealth('a', true);
    balancer.acquire().release(true);
    expect(panic[1]).toEqual({ active: false, usable: 1, total: 3 });
  });

  it('panics below the threshold share, like Envoy', () => {
    const { balancer } = makeBalancer({ strategy: roundRobin(), panicThresholdPercent: 50 });
    balancer.setHealth('a', false);
    balancer.setHealth('b', false); // 1/3 usable < 50%
    const seen = new Set(Array.from({ length: 3 }, () => { const l = balancer.acquire(); l.release(true); return l.instance.id; }));
    expect(seen.size).toBe(3);
  });

  it('a retry excluding the healthy instances neither panics nor falls back to an unhealthy one', () => {
    const { balancer } = keyedBalancer();
    const panics: boolean[] = [];
    balancer.on('panic', (e) => panics.push(e.active));
    balancer.setHealth('d', false);
    expect(() => balancer.acquire({ exclude: new Set(['a', 'b', 'c']) })).toThrow(NoInstanceAvailableError);
    expect(panics).toEqual([]);
    expect(balancer.stats().panic).toBe(false);
  });

  it('in panic, a retry still skips the instances it excluded', () => {
    const { balancer } = keyedBalancer();
    for (const id of ['a', 'b', 'c', 'd']) balancer.setHealth(id, false);
    const lease = balancer.acquire({ key: 'a', exclude: new Set(['a']) });
    expect(lease.instance.id).not.toBe('a');
    expect(balancer.stats().panic).toBe(true);
    lease.release(true);
  });
});

describe('Balancer outlier ejection', () => {
  it('ejects after consecutive failures and returns the instance after the ejection time', () => {
    const { clock, balancer } = makeBalancer({
      strategy: roundRobin(),
      outlierEjection: { consecutiveFailures: 3, baseEjectionTimeMillis: 1000, maxEjectedPercent: 50 },
      slowStart: false,
    });
    const ejected = record(balancer, 'ejected');
    const returned = record(balancer, 'returned');
    let failures = 0;
    while (ejected.length === 0) {
      const l = balancer.acquire();
      l.release(l.instance.id !== 'b');
      if (l.instance.id === 'b') failures++;
    }
    expect(failures).toBe(3);
    expect(ejected[0]).toEqual({ instanceId: 'b', untilMillis: 1000, ejectionCount: 1 });
    expect(balancer.isEjected('b')).toBe(true);
    for (let i = 0; i < 4; i++) {
      const l = balancer.acquire();
      expect(l.instance.id).not.toBe('b');
      l.release(true);
    }
    clock.advance(1000);
    expect(balancer.isEjected('b')).toBe(false);
    expect(returned).toEqual([{ instanceId: 'b' }]);
  });

  it('lowers the ejections to the cap when instances are removed', () => {
    const { clock, balancer } = keyedBalancer({ outlierEjection: { consecutiveFailures: 1, maxEjectedPercent: 50, baseEjectionTimeMillis: 1000 } });
    const returned: string[] = [];
    balancer.on('returned', (e) => returned.push(e.instanceId));
    balancer.acquire({ key: 'a' }).release(false); // a until 1000
    clock.advance(10);
    balancer.acquire({ key: 'b' }).release(false); // b until 1010
    expect(balancer.stats().ejectedInstances).toBe(2); // 2 of 4 = 50%
    balancer.removeInstance('d'); // 3 left: at most floor(1.5) = 1
    expect(returned).toEqual(['a']); // the earliest-ending one comes back
    expect(balancer.stats().ejectedInstances).toBe(1);
    expect(balancer.isEjected('b')).toBe(true);
  });

  it('an ejection that has ended does not count against the cap', () => {
    const { clock, balancer } = keyedBalancer({ outlierEjection: { consecutiveFailures: 2, maxEjectedPercent: 25, baseEjectionTimeMillis: 1000 } });
    balancer.acquire({ key: 'b' }).release(false);
    balancer.acquire({ key: 'b' }).release(false); // b ejected until 1000; cap is 1
    const c1 = balancer.acquire({ key: 'c' });
    const c2 = balancer.acquire({ key: 'c' });
    clock.advance(1000); // b's ejection ends; nothing has picked since
    c1.release(false);
    c2.release(false);
    expect(balancer.isEjected('c')).toBe(true);
    expect(balancer.isEjected('b')).toBe(false);
  });

  it('failures that finish during an ejection do not re-eject the instance on its first call back', () => {
    const { clock, balancer } = keyedBalancer({ outlierEjection: { consecutiveFailures: 2, maxEjectedPercent: 100, baseEjectionTimeMillis: 1000 } });
    const leases = Array.from({ length: 4 }, () => balancer.acquire({ key: 'a' }));
    leases[0]?.release(false);
    leases[1]?.release(false); // ejected
    leases[2]?.release(false);
    leases[3]?.release(false); // finished while ejected
    clock.advance(1000);
    expect(balancer.isEjected('a')).toBe(false);
    balancer.acquire({ key: 'a' }).release(false);
    expect(balancer.isEjected('a')).toBe(false);
  });
});
