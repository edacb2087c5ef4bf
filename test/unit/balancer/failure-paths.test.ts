import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Balancer,
  consistentHash,
  costAware,
  dynamicSelector,
  HealthChecker,
  leastConnections,
  loadAdjustedLatency,
  ManualClock,
  NoInstanceAvailableError,
  OutlierEjector,
  peakEwma,
  powerOfTwoChoices,
  resourceAware,
  roundRobin,
  seededRandom,
  SlowStart,
  smoothWeightedRoundRobin,
  weightedRandom,
  type BalancedInstance,
  type CallOutcome,
  type Strategy,
} from '../../../src/balancer';
import { fake, list } from './fake-instance';

/** Picks the candidate whose id is the request key (else the first), and records what it learns. */
function byKey(): Strategy & { learned: string[]; removed: string[] } {
  const learned: string[] = [];
  const removed: string[] = [];
  return {
    name: 'by-key',
    learned,
    removed,
    pick: (candidates, request) => candidates.find((c) => c.id === request.key) ?? candidates[0],
    onComplete: (i: BalancedInstance, o: CallOutcome) => learned.push(`${i.id}:${o.ok}`),
    onRemove: (id) => removed.push(id),
  };
}

function setup(options: ConstructorParameters<typeof Balancer>[0] = {}): { clock: ManualClock; balancer: Balancer; strategy: ReturnType<typeof byKey> } {
  const clock = new ManualClock(0);
  const strategy = byKey();
  const balancer = new Balancer({
    clock,
    strategy,
    slowStart: false,
    instances: ['a', 'b', 'c', 'd'].map((id) => ({ id, address: `sim://${id}` })),
    ...options,
  });
  return { clock, balancer, strategy };
}

const stat = (b: Balancer, id: string) => b.stats().instances.find((i) => i.id === id);

describe('run() under abort', () => {
  it('settles at once when the caller aborts, even if fn ignores its signal, and does not charge the instance', async () => {
    const { balancer, strategy } = setup({ outlierEjection: { consecutiveFailures: 2, maxEjectedPercent: 100 } });
    for (let i = 0; i < 3; i++) {
      const controller = new AbortController();
      let fnSignal!: AbortSignal;
      const pending = balancer.run((_i, s) => {
        fnSignal = s;
        return new Promise<never>(() => undefined); // never settles, ignores the signal
      }, { key: 'a', signal: controller.signal });
      await Promise.resolve();
      expect(stat(balancer, 'a')?.inflight).toBe(1);
      controller.abort(new Error('client went away'));
      await expect(pending).rejects.toThrow('client went away');
      expect(fnSignal.aborted).toBe(true);
    }
    expect(stat(balancer, 'a')).toMatchObject({ inflight: 0, cancelledRequests: 3, failedRequests: 0, totalRequests: 0 });
    expect(balancer.isEjected('a')).toBe(false);
    expect(strategy.learned).toEqual([]);
  });

  it('does not pick at all when the signal is already aborted', async () => {
    const { balancer } = setup();
    const controller = new AbortController();
    controller.abort(new Error('gone'));
    let called = false;
    await expect(balancer.run(() => (called = true), { signal: controller.signal })).rejects.toThrow('gone');
    expect(called).toBe(false);
    expect(balancer.stats()).toMatchObject({ inflight: 0, totalRequests: 0 });
  });

  it('releases exactly once when fn settles after the timeout', async () => {
    const { clock, balancer } = setup({ timeoutMillis: 100 });
    let finish!: () => void;
    const pending = balancer.run(() => new Promise<void>((resolve) => (finish = resolve)), { key: 'b' });
    await Promise.resolve();
    await Promise.resolve();
    clock.advance(100);
    await expect(pending).rejects.toThrow(/timeout/);
    finish();
    await Promise.resolve();
    expect(stat(balancer, 'b')).toMatchObject({ inflight: 0, totalRequests: 1, failedRequests: 1 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('clears its timer when fn settles first', async () => {
    const { clock, balancer } = setup({ timeoutMillis: 100 });
    await balancer.run(() => 'ok');
    await expect(balancer.run(() => Promise.reject(new Error('x')))).rejects.toThrow('x');
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('removed instances', () => {
  it('a call finishing on a removed instance frees its slot but teaches the strategy and the ejector nothing', () => {
    const { balancer, strategy } = setup({ outlierEjection: { consecutiveFailures: 1, maxEjectedPercent: 100 } });
    const lease = balancer.acquire({ key: 'a' });
    balancer.removeInstance('a');
    balancer.addInstance({ id: 'a', address: 'sim://a2' });
    lease.release(false);
    expect(strategy.learned).toEqual([]);
    expect(balancer.isEjected('a')).toBe(false); // the new `a` is not ejected for the old one's failure
    expect(stat(balancer, 'a')).toMatchObject({ inflight: 0, failedRequests: 0 });
  });

  it('a peak-EWMA estimate is not re-created for a removed instance', () => {
    const clock = new ManualClock(0);
    const s = peakEwma({ clock });
    const balancer = new Balancer({ clock, strategy: s, slowStart: false, instances: [{ id: 'a', address: 'x' }, { id: 'b', address: 'y' }] });
    const lease = balancer.acquire();
    const id = lease.instance.id;
    balancer.removeInstance(id);
    clock.advance(5000);
    lease.release(true); // 5 s: would set the estimate to 5000 ms if learned
    balancer.addInstance({ id, address: 'z' });
    expect(s.estimateMillis(id)).toBe(30);
  });

  it('lowers the ejections to the cap when instances are removed', () => {
    const { clock, balancer } = setup({ outlierEjection: { consecutiveFailures: 1, maxEjectedPercent: 50, baseEjectionTimeMillis: 1000 } });
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
    const { clock, balancer } = setup({ outlierEjection: { consecutiveFailures: 2, maxEjectedPercent: 25, baseEjectionTimeMillis: 1000 } });
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
    const { clock, balancer } = setup({ outlierEjection: { consecutiveFailures: 2, maxEjectedPercent: 100, baseEjectionTimeMillis: 1000 } });
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

describe('panic mode and exclusions', () => {
  it('a retry excluding the healthy instances neither panics nor falls back to an unhealthy one', () => {
    const { balancer } = setup();
    const panics: boolean[] = [];
    balancer.on('panic', (e) => panics.push(e.active));
    balancer.setHealth('d', false);
    expect(() => balancer.acquire({ exclude: new Set(['a', 'b', 'c']) })).toThrow(NoInstanceAvailableError);
    expect(panics).toEqual([]);
    expect(balancer.stats().panic).toBe(false);
  });

  it('in panic, a retry still skips the instances it excluded', () => {
    const { balancer } = setup();
    for (const id of ['a', 'b', 'c', 'd']) balancer.setHealth(id, false);
    const lease = balancer.acquire({ key: 'a', exclude: new Set(['a']) });
    expect(lease.instance.id).not.toBe('a');
    expect(balancer.stats().panic).toBe(true);
    lease.release(true);
  });
});

describe('validation names the option', () => {
  it.each([
    [{ timeoutMillis: Number.NaN }, /timeoutMillis/],
    [{ timeoutMillis: -1 }, /timeoutMillis/],
    [{ latencyDecayTimeMillis: 0 }, /latencyDecayTimeMillis/],
    [{ panicThresholdPercent: Number.NaN }, /panicThresholdPercent/],
    [{ instances: [{ id: 'x', address: 'a', weight: Number.NaN }] }, /instances\[x\]\.weight/],
    [{ instances: [{ id: 'x', address: 'a', weight: -2 }] }, /instances\[x\]\.weight/],
    [{ instances: [{ id: 'x', address: 'a', weight: 0 }] }, /instances\[x\]\.weight/],
    [{ instances: [{ id: 'x', address: 'a', metadata: { costPerHour: -1 } }] }, /metadata\.costPerHour/],
    [{ instances: [{ id: 'x', address: 'a', metadata: { cpuUsageRatio: Number.NaN } }] }, /metadata\.cpuUsageRatio/],
    [{ instances: [{ id: 'x', address: 'a', metadata: { capacity: 0 } }] }, /metadata\.capacity/],
    [{ slowStart: { windowMillis: Number.NaN } }, /slowStart\.windowMillis/],
    [{ slowStart: { aggression: 0 } }, /slowStart\.aggression/],
    [{ outlierEjection: { baseEjectionTimeMillis: -5 } }, /outlierEjection\.baseEjectionTimeMillis/],
    [{ outlierEjection: { maxEjectedPercent: Number.NaN } }, /outlierEjection\.maxEjectedPercent/],
  ] as Array<[ConstructorParameters<typeof Balancer>[0], RegExp]>)('%j', (options, pattern) => {
    expect(() => new Balancer(options)).toThrow(pattern);
  });

  it('in reported usage, strategies and the health checker', () => {
    const b = new Balancer({ instances: [{ id: 'a', address: 'x' }] });
    expect(() => b.reportUsage('a', { gpuUsageRatio: 1.5 })).toThrow(/gpuUsageRatio/);
    expect(b.instance('a')?.metadata.gpuUsageRatio).toBeUndefined();
    expect(() => consistentHash({ loadFactor: Number.NaN })).toThrow(/loadFactor/);
    expect(() => consistentHash({ virtualNodesPerWeight: Number.NaN })).toThrow(/virtualNodesPerWeight/);
    expect(() => peakEwma({ failurePenaltyMillis: -1 })).toThrow(/failurePenaltyMillis/);
    expect(() => peakEwma({ initialLatencyMillis: Number.NaN })).toThrow(/initialLatencyMillis/);
    expect(() => loadAdjustedLatency({ loadWeight: -1 })).toThrow(/loadWeight/);
    expect(() => costAware({ maxCostPerRequest: Number.NaN })).toThrow(/maxCostPerRequest/);
    expect(() => resourceAware({ unreportedScore: 2 })).toThrow(/unreportedScore/);
    expect(() => dynamicSelector({ evaluationIntervalMillis: -1 })).toThrow(/evaluationIntervalMillis/);
    expect(() => new HealthChecker(b, { intervalMillis: Number.NaN, probe: async () => true })).toThrow(/intervalMillis/);
    expect(() => new HealthChecker(b, { fall: 0, probe: async () => true })).toThrow(/fall/);
    expect(() => new OutlierEjector({ consecutiveFailures: 1.5 })).toThrow(/consecutiveFailures/);
  });
});

describe('strategies with one instance and with zero weights', () => {
  const clock = new ManualClock(0);
  const all: Array<[string, () => Strategy]> = [
    ['round-robin', () => roundRobin()],
    ['smooth WRR', () => smoothWeightedRoundRobin()],
    ['random', () => weightedRandom({ random: seededRandom(1) })],
    ['least-connections', () => leastConnections()],
    ['power of two', () => powerOfTwoChoices({ random: seededRandom(1) })],
    ['peak EWMA', () => peakEwma({ clock })],
    ['consistent hash', () => consistentHash({ random: seededRandom(1) })],
    ['resource-aware', () => resourceAware()],
    ['load-adjusted latency', () => loadAdjustedLatency()],
    ['cost-aware', () => costAware()],
    ['dynamic', () => dynamicSelector({ clock })],
  ];

  it.each(all)('%s picks the only candidate', (_name, make) => {
    const s = make();
    const only = fake('only', { inflight: 7 });
    for (let i = 0; i < 5; i++) expect(s.pick(list(only), { key: `k${i}` }).id).toBe('only');
  });

  it.each(all)('%s spreads over candidates whose effective weight is 0 (every one warming from 0%%)', (_name, make) => {
    const s = make();
    const c = list(fake('a', { effectiveWeight: 0 }), fake('b', { effectiveWeight: 0 }), fake('c', { effectiveWeight: 0 }));
    const seen = new Set(Array.from({ length: 60 }, (_, i) => s.pick(c, { key: `k${i}` }).id));
    if (_name !== 'power of two') expect(seen.size).toBeGreaterThan(1);
    for (const id of seen) expect(['a', 'b', 'c']).toContain(id);
  });

  it('weighted random and smooth WRR never pick a weight-0 candidate beside weighted ones', () => {
    const c = list(fake('zero', { effectiveWeight: 0 }), fake('a'), fake('b', { effectiveWeight: 2 }));
    const random = weightedRandom({ random: seededRandom(3) });
    const swrr = smoothWeightedRoundRobin();
    for (let i = 0; i < 300; i++) {
      expect(random.pick(c, {}).id).not.toBe('zero');
      expect(swrr.pick(c, {}).id).not.toBe('zero');
    }
    // A draw at the very top of [0, 1) must not fall through to a trailing weight-0 candidate.
    const top = weightedRandom({ random: () => 0.9999999999999999 });
    expect(top.pick(list(fake('a'), fake('zero', { effectiveWeight: 0 })), {}).id).toBe('a');
  });

  it('power of two always compares two distinct candidates', () => {
    const s = powerOfTwoChoices({ random: seededRandom(11) });
    const idle = fake('idle');
    const busy = fake('busy', { inflight: 3 });
    for (let i = 0; i < 500; i++) expect(s.pick(list(busy, idle), {}).id).toBe('idle');
  });
});

describe('consistent hashing bounds load through the balancer', () => {
  it('no instance exceeds ceil(c × (total + 1) / n) however hot the key', () => {
    const b = new Balancer({
      strategy: consistentHash({ loadFactor: 1.25 }),
      slowStart: false,
      instances: ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id, address: id })),
    });
    for (let total = 0; total < 200; total++) {
      const bound = Math.ceil((1.25 * (total + 1)) / 5);
      const lease = b.acquire({ key: 'the-hot-key' });
      expect(lease.instance.inflight).toBeLessThanOrEqual(bound);
    }
    const loads = b.stats().instances.map((i) => i.inflight);
    expect(Math.max(...loads)).toBeLessThanOrEqual(Math.ceil((1.25 * 200) / 5));
  });

  it('the bound follows weight: a weight-3 instance may take three times the calls', () => {
    const s = consistentHash({ loadFactor: 1 });
    const heavy = fake('heavy', { weight: 3 });
    const light = fake('light');
    const c = list(heavy, light);
    for (let i = 0; i < 400; i++) {
      const picked = s.pick(c, { key: `k${i % 7}` }) as ReturnType<typeof fake>;
      picked.inflight++;
    }
    expect(heavy.inflight).toBe(300);
    expect(light.inflight).toBe(100);
  });
});

describe('slow start math', () => {
  it('follows (elapsed / window)^(1 / aggression) above the minimum', () => {
    const s = new SlowStart({ windowMillis: 1000, aggression: 2, minWeightPercent: 10 });
    expect(s.factor(0, 0)).toBeCloseTo(0.1, 9);
    expect(s.factor(0, 5)).toBeCloseTo(0.1, 9); // sqrt(0.005) = 0.07 < 10%
    expect(s.factor(0, 250)).toBeCloseTo(0.5, 9);
    expect(s.factor(0, 640)).toBeCloseTo(0.8, 9);
    expect(s.factor(0, 1000)).toBe(1);
    expect(new SlowStart({ windowMillis: 0 }).factor(0, 0)).toBe(1);
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

describe('health checker stop', () => {
  it('aborts running probes, clears their timers and discards their results', async () => {
    const clock = new ManualClock(0);
    const b = new Balancer({ clock, instances: [{ id: 'a', address: 'x' }] });
    const signals: AbortSignal[] = [];
    const checker = new HealthChecker(b, {
      clock,
      intervalMillis: 100,
      timeoutMillis: 50,
      fall: 1,
      probe: (_i, signal) => {
        signals.push(signal);
        return new Promise<boolean>((resolve) => signal.addEventListener('abort', () => resolve(false)));
      },
    });
    checker.start();
    expect(clock.pendingTimers).toBe(2); // next round + the probe's timeout
    checker.stop();
    await checker.idle();
    expect(signals[0]?.aborted).toBe(true);
    expect(clock.pendingTimers).toBe(0);
    expect(b.isHealthy('a')).toBe(true); // the aborted probe did not count as a failure
    clock.advance(1000);
    expect(signals).toHaveLength(1);
  });
});

describe('strategy code takes time and randomness only from what is injected', () => {
  it('has no Date.now(), performance.now() or Math.random() in src/balancer/strategies', () => {
    const dir = join(__dirname, '../../../src/balancer/strategies');
    for (const file of readdirSync(dir)) {
      const code = readFileSync(join(dir, file), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
      expect(`${file}: ${/Date\.now\(|performance\.now\(|Math\.random\(/.test(code)}`).toBe(`${file}: false`);
    }
  });
});
