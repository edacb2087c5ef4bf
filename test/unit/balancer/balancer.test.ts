import {
  Balancer,
  leastConnections,
  ManualClock,
  NoInstanceAvailableError,
  RequestTimeoutError,
  roundRobin,
  type BalancerEventMap,
} from '../../../src/balancer';
import { ConfigError } from '../../../src/kernel/errors';

function make(options: ConstructorParameters<typeof Balancer>[0] = {}): { clock: ManualClock; balancer: Balancer } {
  const clock = new ManualClock(0);
  const balancer = new Balancer({
    clock,
    strategy: leastConnections(),
    instances: [
      { id: 'a', address: 'sim://a' },
      { id: 'b', address: 'sim://b' },
      { id: 'c', address: 'sim://c' },
    ],
    ...options,
  });
  return { clock, balancer };
}

function record<K extends keyof BalancerEventMap & string>(balancer: Balancer, event: K): Array<BalancerEventMap[K]> {
  const seen: Array<BalancerEventMap[K]> = [];
  balancer.on(event, (payload) => seen.push(payload));
  return seen;
}

describe('Balancer.run', () => {
  it('counts the call in flight while it runs and releases it after', async () => {
    const { balancer } = make();
    let release!: () => void;
    const pending = balancer.run((instance) => new Promise<string>((resolve) => (release = () => resolve(instance.id))));
    await Promise.resolve();
    expect(balancer.stats().inflight).toBe(1);
    release();
    await expect(pending).resolves.toBe('a');
    const stats = balancer.stats();
    expect(stats.inflight).toBe(0);
    expect(stats.totalRequests).toBe(1);
  });

  it('releases and counts a failure when fn throws', async () => {
    const { balancer } = make();
    await expect(balancer.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(balancer.run(() => { throw new Error('sync'); })).rejects.toThrow('sync');
    const stats = balancer.stats();
    expect(stats.inflight).toBe(0);
    expect(stats.failedRequests).toBe(2);
  });

  it('times out on the injected clock, aborts the signal and releases', async () => {
    const { clock, balancer } = make({ timeoutMillis: 500 });
    let signal!: AbortSignal;
    const pending = balancer.run((_i, s) => {
      signal = s;
      return new Promise<never>(() => undefined);
    });
    await Promise.resolve();
    await Promise.resolve();
    expect(balancer.stats().inflight).toBe(1);
    clock.advance(499);
    expect(signal.aborted).toBe(false);
    clock.advance(1);
    await expect(pending).rejects.toBeInstanceOf(RequestTimeoutError);
    expect(signal.aborted).toBe(true);
    const stats = balancer.stats();
    expect(stats.inflight).toBe(0);
    expect(stats.failedRequests).toBe(1);
    expect(stats.instances[0]?.latencyP99Millis).toBeCloseTo(500, -1);
  });

  it('classifies resolved values with isFailure', async () => {
    const { balancer } = make();
    await balancer.run(() => 503, { isFailure: (status) => status >= 500 });
    expect(balancer.stats().failedRequests).toBe(1);
  });

  it('spreads concurrent calls by least connections', async () => {
    const { balancer } = make();
    const picked: string[] = [];
    const gates: Array<() => void> = [];
    const calls = Array.from({ length: 6 }, () =>
      balancer.run((i) => {
        picked.push(i.id);
        return new Promise<void>((resolve) => gates.push(resolve));
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(picked.sort()).toEqual(['a', 'a', 'b', 'b', 'c', 'c']);
    for (const g of gates) g();
    await Promise.all(calls);
  });
});

describe('Balancer instances', () => {
  it('adds and removes instances at run time', () => {
    const { balancer } = make({ strategy: roundRobin() });
    const added = record(balancer, 'instance-added');
    balancer.addInstance({ id: 'd', address: 'sim://d' });
    expect(added).toEqual([{ instanceId: 'd' }]);
    expect(balancer.removeInstance('a')).toBe(true);
    expect(balancer.removeInstance('a')).toBe(false);
    const seen = new Set(Array.from({ length: 6 }, () => { const l = balancer.acquire(); l.release(true); return l.instance.id; }));
    expect([...seen].sort()).toEqual(['b', 'c', 'd']);
  });

  it('validates specs and options, naming the option', () => {
    expect(() => make({ instances: [{ id: 'x', address: 'a' }, { id: 'x', address: 'b' }] })).toThrow(/duplicate/);
    expect(() => make({ instances: [{ id: 'x', address: 'a', weight: 0 }] })).toThrow(ConfigError);
    expect(() => make({ panicThresholdPercent: 150 })).toThrow(/panicThresholdPercent/);
  });

  it('does not mutate the caller options', () => {
    const instances = Object.freeze([Object.freeze({ id: 'a', address: 'x', metadata: Object.freeze({ cpuUsageRatio: 0.1 }) })]);
    const options = Object.freeze({ instances, outlierEjection: Object.freeze({ consecutiveFailures: 2 }) });
    const b = new Balancer(options);
    b.reportUsage('a', { cpuUsageRatio: 0.9 });
    expect(instances[0]?.metadata.cpuUsageRatio).toBe(0.1);
    expect(b.instance('a')?.metadata.cpuUsageRatio).toBe(0.9);
  });

  it('throws NoInstanceAvailableError when there is nothing to pick', () => {
    const b = new Balancer();
    expect(() => b.acquire()).toThrow(NoInstanceAvailableError);
    const { balancer } = make();
    expect(() => balancer.acquire({ exclude: new Set(['a', 'b', 'c']) })).toThrow(NoInstanceAvailableError);
    expect(balancer.stats().noInstanceErrors).toBe(1);
  });

  it('slow-starts an added instance: its effective weight ramps over the window', () => {
    const { clock, balancer } = make({ slowStart: { windowMillis: 1000, minWeightPercent: 10 } });
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
});

describe('Balancer health, ejection and panic', () => {
  it('skips unhealthy instances and enters panic mode when none is healthy', () => {
    const { balancer } = make({ strategy: roundRobin() });
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
    const { balancer } = make({ strategy: roundRobin(), panicThresholdPercent: 50 });
    balancer.setHealth('a', false);
    balancer.setHealth('b', false); // 1/3 usable < 50%
    const seen = new Set(Array.from({ length: 3 }, () => { const l = balancer.acquire(); l.release(true); return l.instance.id; }));
    expect(seen.size).toBe(3);
  });

  it('ejects after consecutive failures and returns the instance after the ejection time', () => {
    const { clock, balancer } = make({
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
});
