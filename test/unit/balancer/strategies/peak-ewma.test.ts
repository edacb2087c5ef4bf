import { ConfigError, ManualClock, peakEwma, type PeakEwma } from '../../../../src/balancer';
import { fake, list, type FakeInstance } from '../fake-instance';

describe('peakEwma', () => {
  const setup = (): { clock: ManualClock; s: PeakEwma; a: FakeInstance; b: FakeInstance } => {
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

  it('counts the age of the oldest call in flight as latency, so an instance whose calls hang looks slow', () => {
    const { s, a, b } = setup();
    a.inflight = 1;
    a.oldestInflightAgeMillis = 5_000; // 5000 × 2 = 10000
    b.inflight = 5; // 30 × 6 = 180
    expect(s.pick(list(a, b), {}).id).toBe('b');
    a.oldestInflightAgeMillis = 20; // younger than the estimate: 30 × 2 = 60 < 180
    expect(s.pick(list(a, b), {}).id).toBe('a');
  });

  it('charges failures failurePenaltyMillis while no other instance has answered well, and a slower failure its own latency', () => {
    const { s, a, b } = setup();
    s.pick(list(a, b), {});
    s.onComplete?.(a, { latencyMillis: 1, ok: false });
    expect(s.estimateMillis('a')).toBe(1000);
    s.onComplete?.(b, { latencyMillis: 5000, ok: false, timeoutMillis: 5000 }); // timed out
    expect(s.estimateMillis('b')).toBe(5000);
  });

  it('scales the failure penalty with what a call to the healthy instances costs, not a fixed 1 s', () => {
    const { s, a, b } = setup();
    s.onComplete?.(b, { latencyMillis: 150, ok: true });
    b.inflight = 8;
    s.pick(list(a, b), {});
    s.onComplete?.(a, { latencyMillis: 0.1, ok: false });
    expect(s.estimateMillis('a')).toBeCloseTo(4 * 150 * 9, 6); // failurePenaltyFactor × healthy cost × (inflight + 1)
    expect(s.pick(list(a, b), {}).id).toBe('b'); // 5400 × 1 > 150 × 9

    const fast = setup();
    fast.s.pick(list(fast.a, fast.b), {});
    fast.clock.advance(100_000); // the initial 30 ms has decayed away: b's estimate becomes its 2 ms
    fast.s.onComplete?.(fast.b, { latencyMillis: 2, ok: true });
    fast.s.onComplete?.(fast.a, { latencyMillis: 0.1, ok: false });
    expect(fast.s.estimateMillis('a')).toBeCloseTo(4 * 2, 1);
  });

  it('validates its options, naming them', () => {
    expect(() => peakEwma({ decayTimeMillis: 0 })).toThrow(ConfigError);
    expect(() => peakEwma({ decayTimeMillis: 0 })).toThrow(/decayTimeMillis/);
    expect(() => peakEwma({ failurePenaltyMillis: -1 })).toThrow(/failurePenaltyMillis/);
    expect(() => peakEwma({ failurePenaltyFactor: 0 })).toThrow(/failurePenaltyFactor/);
    expect(() => peakEwma({ initialLatencyMillis: Number.NaN })).toThrow(/initialLatencyMillis/);
  });
});
