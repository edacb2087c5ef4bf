import { loadAdjustedLatency } from '../../../../src/balancer';
import { fake, list } from '../fake-instance';

describe('loadAdjustedLatency', () => {
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

  it('refuses an invalid loadWeight, naming it', () => {
    expect(() => loadAdjustedLatency({ loadWeight: -1 })).toThrow(/loadWeight/);
  });
});
