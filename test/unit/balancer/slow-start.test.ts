import { SlowStart } from '../../../src/balancer/slow-start';

describe('SlowStart', () => {
  it('follows (elapsed / window)^(1 / aggression) above the minimum', () => {
    const s = new SlowStart({ windowMillis: 1000, aggression: 2, minWeightPercent: 10 });
    expect(s.factor(0, 0)).toBeCloseTo(0.1, 9);
    expect(s.factor(0, 5)).toBeCloseTo(0.1, 9); // sqrt(0.005) = 0.07 < 10%
    expect(s.factor(0, 250)).toBeCloseTo(0.5, 9);
    expect(s.factor(0, 640)).toBeCloseTo(0.8, 9);
    expect(s.factor(0, 1000)).toBe(1);
    expect(new SlowStart({ windowMillis: 0 }).factor(0, 0)).toBe(1);
  });
});
