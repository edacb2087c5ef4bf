import { OutlierEjector } from '../../../src/balancer/outlier-ejection';

describe('OutlierEjector', () => {
  it('ejects after the configured consecutive failures; a success resets the count', () => {
    const e = new OutlierEjector({ consecutiveFailures: 3, baseEjectionTimeMillis: 100 });
    expect(e.record('a', false, 0, 10)).toBeUndefined();
    expect(e.record('a', false, 0, 10)).toBeUndefined();
    expect(e.record('a', true, 0, 10)).toBeUndefined();
    expect(e.record('a', false, 0, 10)).toBeUndefined();
    expect(e.record('a', false, 0, 10)).toBeUndefined();
    expect(e.record('a', false, 5, 10)).toEqual({ instanceId: 'a', untilMillis: 105, ejectionCount: 1 });
    expect(e.isEjected('a')).toBe(true);
    expect(e.release(104)).toEqual([]);
    expect(e.release(105)).toEqual(['a']);
    expect(e.isEjected('a')).toBe(false);
  });

  it('makes each repeat longer, capped at the maximum', () => {
    const e = new OutlierEjector({ consecutiveFailures: 1, baseEjectionTimeMillis: 100, maxEjectionTimeMillis: 250 });
    const durations: number[] = [];
    let now = 0;
    for (let i = 0; i < 4; i++) {
      const ejection = e.record('a', false, now, 10);
      durations.push((ejection?.untilMillis ?? NaN) - now);
      now = ejection?.untilMillis ?? now;
      e.release(now);
    }
    expect(durations).toEqual([100, 200, 250, 250]);
  });

  it('forgets repeats after quiet periods', () => {
    const e = new OutlierEjector({ consecutiveFailures: 1, baseEjectionTimeMillis: 100 });
    e.record('a', false, 0, 10);
    e.release(100);
    e.record('a', false, 100, 10); // right away: second ejection, 200 ms
    e.release(300);
    const later = e.record('a', false, 300 + 10 * 100, 10); // 10 quiet periods: back to the first step
    expect(later?.ejectionCount).toBe(1);
  });

  it('never ejects more than the configured share (at least one)', () => {
    const e = new OutlierEjector({ consecutiveFailures: 1, maxEjectedPercent: 20 });
    expect(e.maxEjected(10)).toBe(2);
    expect(e.maxEjected(3)).toBe(1);
    expect(e.record('a', false, 0, 10)).toBeDefined();
    expect(e.record('b', false, 0, 10)).toBeDefined();
    expect(e.record('c', false, 0, 10)).toBeUndefined();
    expect(e.ejectedCount).toBe(2);
    expect(new OutlierEjector({ maxEjectedPercent: 0 }).maxEjected(10)).toBe(0);
  });

  it('validates options, naming them', () => {
    expect(() => new OutlierEjector({ consecutiveFailures: 0 })).toThrow(/consecutiveFailures/);
    expect(() => new OutlierEjector({ baseEjectionTimeMillis: 1000, maxEjectionTimeMillis: 10 })).toThrow(/maxEjectionTimeMillis/);
    expect(() => new OutlierEjector({ consecutiveFailures: 1.5 })).toThrow(/consecutiveFailures/);
  });
});
