import {
  BudgetExceededError,
  consistentHash,
  costAware,
  dynamicSelector,
  leastConnections,
  loadAdjustedLatency,
  ManualClock,
  NoInstanceAvailableError,
  peakEwma,
  powerOfTwoChoices,
  resourceAware,
  roundRobin,
  seededRandom,
  smoothWeightedRoundRobin,
  weightedRandom,
  type Strategy,
} from '../../../src/balancer';
import { ConfigError } from '../../../src/kernel/errors';
import { fake, list, replay, type FakeInstance } from './fake-instance';

const ids = (strategy: Strategy, candidates: ReturnType<typeof list>, n: number): string[] =>
  Array.from({ length: n }, () => strategy.pick(candidates, {}).id);

describe('round-robin', () => {
  it('serves candidates in turn', () => {
    expect(ids(roundRobin(), list(fake('a'), fake('b'), fake('c')), 7)).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a']);
  });
});

describe('smooth weighted round-robin', () => {
  it('interleaves 5:1:1 as a a b a c a a', () => {
    const c = list(fake('a', { weight: 5 }), fake('b'), fake('c'));
    expect(ids(smoothWeightedRoundRobin(), c, 7).join(' ')).toBe('a a b a c a a');
  });

  it('follows the effective weight (slow start)', () => {
    const c = list(fake('a', { weight: 1, effectiveWeight: 0.25 }), fake('b'));
    const picks = ids(smoothWeightedRoundRobin(), c, 50);
    expect(picks.filter((id) => id === 'a')).toHaveLength(10);
  });
});

describe('weighted random', () => {
  it('maps the random draw onto cumulative weights', () => {
    const s = weightedRandom({ random: replay(0.0, 0.49, 0.5, 0.99) });
    const c = list(fake('a', { weight: 2 }), fake('b', { weight: 1 }), fake('c', { weight: 1 }));
    expect(ids(s, c, 4)).toEqual(['a', 'a', 'b', 'c']);
  });
});

describe('least connections', () => {
  it('picks the fewest in flight with a full scan', () => {
    const c = list(fake('a', { inflight: 3 }), fake('b', { inflight: 1 }), fake('c', { inflight: 2 }));
    expect(ids(leastConnections(), c, 3)).toEqual(['b', 'b', 'b']);
  });

  it('breaks ties round-robin', () => {
    const c = list(fake('a', { inflight: 1 }), fake('b', { inflight: 1 }), fake('c', { inflight: 5 }));
    expect(ids(leastConnections(), c, 4)).toEqual(['a', 'b', 'a', 'b']);
  });

  it('weighs in-flight calls: (inflight + 1) / weight', () => {
    // a: (3+1)/4 = 1, b: (0+1)/1 = 1 → tie; a: (4+1)/4 = 1.25 > b → b.
    const a = fake('a', { weight: 4, inflight: 4 });
    const b = fake('b', { inflight: 0 });
    expect(leastConnections().pick(list(a, b), {}).id).toBe('b');
    a.inflight = 2;
    expect(leastConnections().pick(list(a, b), {}).id).toBe('a');
  });
});

describe('power of two choices', () => {
  it('compares two distinct random candidates and keeps the less loaded', () => {
    const c = list(fake('a', { inflight: 5 }), fake('b', { inflight: 0 }), fake('c', { inflight: 2 }), fake('d', { inflight: 9 }));
    // i = floor(0.0 * 4) = 0 (a); j = (0 + 1 + floor(0.5 * 3)) % 4 = 2 (c) → c.
    expect(powerOfTwoChoices({ random: replay(0.0, 0.5) }).pick(c, {}).id).toBe('c');
    // i = 3 (d); j = (3 + 1 + floor(0.99 * 3)) % 4 = 2 (c) → c; never the same index twice.
    expect(powerOfTwoChoices({ random: replay(0.99, 0.99) }).pick(c, {}).id).toBe('c');
    // i = 1 (b); j = (1 + 1 + 0) % 4 = 2 (c) → b.
    expect(powerOfTwoChoices({ random: replay(0.3, 0.0) }).pick(c, {}).id).toBe('b');
  });
});

describe('peak EWMA', () => {
  const setup = (): { clock: ManualClock; s: ReturnType<typeof peakEwma>; a: FakeInstance; b: FakeInstance } => {
    const clock = new ManualClock(0);
    return { clock, s: peakEwma({ clock }), a: fake('a'), b: fake('b') };
  };

  it('starts new instances at the initial latency and jumps to a slower observation at once', () => {
    const { s, a, b } = setup();
    expect(s.estimateMillis('a')).toBe(30);
    s.onComplete?.(a, { latencyMillis: 100, ok: true });
    expect(s.estimateMillis('a')).toBe(100);
    expect(s.pick(list(a, b), {}).id).toBe('b');
  });

  it('moves toward faster observations with the decay time', () => {
    const { clock, s, a } = setup();
    s.onComplete?.(a, { latencyMillis: 100, ok: true });
    clock.advance(10_000);
    s.onComplete?.(a, { latencyMillis: 10, ok: true });
    // w = e^-1: 100 × 0.3679 + 10 × 0.6321
    expect(s.estimateMillis('a')).toBeCloseTo(100 * Math.exp(-1) + 10 * (1 - Math.exp(-1)), 6);
  });

  it('lets an idle instance decay toward zero so it is probed again', () => {
    const { clock, s, a, b } = setup();
    s.onComplete?.(a, { latencyMillis: 300, ok: true });
    s.onComplete?.(b, { latencyMillis: 30, ok: true });
    b.inflight = 3; // b: 30 × 4 = 120 < a: 300
    expect(s.pick(list(a, b), {}).id).toBe('b');
    clock.advance(10_000); // both decay by e: a 110.4, b 11.04 × 4 = 44.1
    expect(s.pick(list(a, b), {}).id).toBe('b');
    b.inflight = 12; // b: 11.04 × 13 = 143.5 > a: 110.4
    expect(s.pick(list(a, b), {}).id).toBe('a');
  });

  it('multiplies by calls in flight + 1', () => {
    const { s, a, b } = setup();
    s.onComplete?.(a, { latencyMillis: 10, ok: true }); // blends at w = 1: stays 30
    a.inflight = 0;
    b.inflight = 1; // 30 × 2 = 60 vs a 30 × 1
    expect(s.pick(list(a, b), {}).id).toBe('a');
  });

  it('charges a failure at least the penalty, or the timeout when there was one', () => {
    const { s, a, b } = setup();
    s.onComplete?.(a, { latencyMillis: 1, ok: false });
    expect(s.estimateMillis('a')).toBe(1000);
    s.onComplete?.(b, { latencyMillis: 2, ok: false, timeoutMillis: 5000 });
    expect(s.estimateMillis('b')).toBe(5000);
  });

  it('validates its options', () => {
    expect(() => peakEwma({ decayTimeMillis: 0 })).toThrow(ConfigError);
    expect(() => peakEwma({ decayTimeMillis: 0 })).toThrow(/decayTimeMillis/);
  });
});

describe('consistent hash with bounded load', () => {
  const five = (): FakeInstance[] => ['a', 'b', 'c', 'd', 'e'].map((id) => fake(id));

  it('sends a key to the same instance every time', () => {
    const s = consistentHash({ loadFactor: Infinity });
    const c = list(...five());
    const first = s.pick(c, { key: 'user-42' }).id;
    for (let i = 0; i < 10; i++) expect(s.pick(c, { key: 'user-42' }).id).toBe(first);
  });

  it('moves only the keys of a removed instance', () => {
    const s = consistentHash({ loadFactor: Infinity });
    const all = five();
    const before = new Map(Array.from({ length: 1000 }, (_, i) => [`k${i}`, s.pick(list(...all), { key: `k${i}` }).id]));
    const without = all.filter((i) => i.id !== 'c');
    let moved = 0;
    for (const [key, id] of before) {
      const after = s.pick(list(...without), { key }).id;
      if (id === 'c') expect(after).not.toBe('c');
      else if (after !== id) moved++;
    }
    expect(moved).toBe(0);
    const shareOfC = [...before.values()].filter((id) => id === 'c').length / 1000;
    expect(shareOfC).toBeGreaterThan(0.1);
    expect(shareOfC).toBeLessThan(0.3);
  });

  it('spills a hot key to the next instance when its owner is at the bound', () => {
    const s = consistentHash({ loadFactor: 1.25 });
    const all = five();
    const owner = s.pick(list(...all), { key: 'hot' }) as FakeInstance;
    // total in flight 4 → bound ceil(1.25 × 5 / 5) = 2
    owner.inflight = 2;
    const other = all.find((i) => i !== owner) as FakeInstance;
    other.inflight = 2;
    const next = s.pick(list(...all), { key: 'hot' });
    expect(next.id).not.toBe(owner.id);
    expect(next.inflight).toBeLessThan(2);
  });

  it('refuses a load factor below 1', () => {
    expect(() => consistentHash({ loadFactor: 0.5 })).toThrow(/loadFactor/);
  });
});

describe('resource aware', () => {
  const gpu = fake('gpu', { metadata: { capabilities: { gpu_memory: '24GB', cpu_cores: 16 }, cpuUsageRatio: 0.9, memoryUsageRatio: 0.5, gpuUsageRatio: 0.5 } });
  const small = fake('small', { metadata: { capabilities: { gpu_memory: '8GB', cpu_cores: 4 }, cpuUsageRatio: 0.1, memoryUsageRatio: 0.1, gpuUsageRatio: 0.1 } });
  const cpuOnly = fake('cpu', { metadata: { capabilities: { cpu_cores: 32 }, cpuUsageRatio: 0.2, memoryUsageRatio: 0.2 } });

  it('keeps only instances that meet requirements such as gpu_memory >= 16GB', () => {
    const s = resourceAware({ requirements: { gpu_memory: '>=16GB' } });
    expect(s.pick(list(gpu, small, cpuOnly), {}).id).toBe('gpu');
    expect(s.pick(list(gpu, small, cpuOnly), { requirements: ['cpu_cores >= 8'] }).id).toBe('gpu');
  });

  it('throws when no instance meets them', () => {
    const s = resourceAware({ requirements: ['gpu_memory >= 80GB'] });
    expect(() => s.pick(list(gpu, small), {})).toThrow(NoInstanceAvailableError);
  });

  it('prefers free resources, divided by calls in flight', () => {
    const s = resourceAware();
    // small: (0.9 + 0.9 + 0.9)/3 = 0.9; cpu: (0.8 + 0.8 + 0.5)/3 = 0.7; gpu: (0.1 + 0.5 + 0.5)/3
    expect(s.pick(list(gpu, small, cpuOnly), {}).id).toBe('small');
    const busy = { ...small, inflight: 1 }; // 0.9 / 2 = 0.45 < 0.7
    expect(s.pick(list(gpu, busy, cpuOnly), {}).id).toBe('cpu');
  });
});

describe('load-adjusted latency', () => {
  it('inflates mean latency by load relative to capacity', () => {
    const s = loadAdjustedLatency();
    const a = fake('a', { latencyEwmaMillis: 10, inflight: 4, metadata: { capacity: 2 } }); // 10 × (1 + 0.5 × 2) = 20
    const b = fake('b', { latencyEwmaMillis: 15, inflight: 0 }); // 15
    expect(s.pick(list(a, b), {}).id).toBe('b');
    a.inflight = 1; // 12.5
    expect(s.pick(list(a, b), {}).id).toBe('a');
  });

  it('skips instances over maxLatencyMillis unless none is left', () => {
    const s = loadAdjustedLatency({ maxLatencyMillis: 50 });
    const slow = fake('slow', { latencyEwmaMillis: 80 });
    const busy = fake('busy', { latencyEwmaMillis: 40, inflight: 10 });
    expect(s.pick(list(slow, busy), {}).id).toBe('busy');
    expect(s.pick(list(slow), {}).id).toBe('slow');
  });
});

describe('cost aware', () => {
  const cheap = fake('cheap', { latencyEwmaMillis: 1000, metadata: { costPerHour: 1 } });
  const fast = fake('fast', { latencyEwmaMillis: 100, metadata: { costPerHour: 5 } });

  it('picks the most performance per unit of money', () => {
    // cost × duration: cheap 1 × 1000² vs fast 5 × 100² → fast
    expect(costAware().pick(list(cheap, fast), {}).id).toBe('fast');
  });

  it('skips instances over the budget and throws BudgetExceededError when none fits', () => {
    // cheap: 1 × 1000 ms / 3.6e6 ms = 0.000278; fast: 5 × 100 / 3.6e6 = 0.000139
    expect(costAware({ maxCostPerRequest: 0.0002 }).pick(list(cheap, fast), {}).id).toBe('fast');
    expect(costAware().pick(list(cheap, fast), { maxCostPerRequest: 0.0003 }).id).toBe('fast');
    const s = costAware({ maxCostPerRequest: 0.0001 });
    expect(() => s.pick(list(cheap, fast), {})).toThrow(BudgetExceededError);
    try {
      s.pick(list(cheap, fast), {});
    } catch (error) {
      expect((error as BudgetExceededError).code).toBe('E_BUDGET_EXCEEDED');
    }
  });
});

describe('dynamic selector', () => {
  it('switches strategy from current metrics and reports the switch', () => {
    const clock = new ManualClock(0);
    const switches: string[] = [];
    const s = dynamicSelector({ clock, evaluationIntervalMillis: 1000, onSwitch: (from, to) => switches.push(`${from}->${to}`) });
    const a = fake('a', { metadata: { cpuUsageRatio: 0.5 } });
    const b = fake('b', { metadata: { cpuUsageRatio: 0.5 } });
    s.pick(list(a, b), {});
    expect(s.name).toBe('dynamic:peak-ewma');
    a.metadata = { cpuUsageRatio: 0.95 };
    b.metadata = { cpuUsageRatio: 0.9 };
    s.pick(list(a, b), {});
    expect(s.name).toBe('dynamic:peak-ewma'); // not re-evaluated within the interval
    clock.advance(1000);
    s.pick(list(a, b), {});
    expect(s.name).toBe('dynamic:resource-aware');
    a.metadata = { cpuUsageRatio: 0.1 };
    b.metadata = { cpuUsageRatio: 0.1 };
    a.latencyEwmaMillis = 400;
    clock.advance(1000);
    s.pick(list(a, b), {});
    expect(s.name).toBe('dynamic:load-adjusted-latency');
    expect(switches).toEqual(['peak-ewma->resource-aware', 'resource-aware->load-adjusted-latency']);
  });
});

describe('seeded random', () => {
  it('repeats its sequence for a seed', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const xs = Array.from({ length: 5 }, a);
    expect(Array.from({ length: 5 }, b)).toEqual(xs);
    expect(new Set(xs).size).toBe(5);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });
});
