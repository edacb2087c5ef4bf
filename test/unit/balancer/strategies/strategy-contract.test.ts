import {
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
} from '../../../../src/balancer';
import { fake, list } from '../fake-instance';

describe('every strategy', () => {
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

  it.each([
    ['peakEwma', () => peakEwma({ decayTime: 1 } as never)],
    ['consistentHash', () => consistentHash({ virtualNodes: 10 } as never)],
    ['weightedRandom', () => weightedRandom({ seed: 1 } as never)],
    ['powerOfTwoChoices', () => powerOfTwoChoices({ rng: Math.random } as never)],
    ['resourceAware', () => resourceAware({ requirement: ['gpu_memory >= 1GB'] } as never)],
    ['loadAdjustedLatency', () => loadAdjustedLatency({ maxLatency: 5 } as never)],
    ['costAware', () => costAware({ budget: 1 } as never)],
    ['dynamicSelector', () => dynamicSelector({ interval: 5 } as never)],
  ])('%s refuses an unknown option key at construction, naming it', (_name, make) => {
    expect(make).toThrow(/^Invalid option `\w+`: is not an option/);
  });

  it('the dynamic selector refuses rules whose strategy is not one', () => {
    expect(() => dynamicSelector({ rules: [{ name: 'x', when: () => true, strategy: 'round-robin' as never }] })).toThrow(/`rules\[0\]\.strategy`/);
    expect(() => dynamicSelector({ rules: [{ name: 'x', when: 'always' as never, strategy: roundRobin() }] })).toThrow(/`rules\[0\]\.when`/);
    expect(() => dynamicSelector({ fallback: roundRobin as never })).toThrow(/`fallback`.*roundRobin\(\)/);
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
});
