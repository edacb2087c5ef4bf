import { ManualClock } from '../../../src/kernel/clock';
import { HotKeyTracker } from '../../../src/cache/hot-key-tracker';

describe('hot-key tracker', () => {
  it('finds the hot keys in bounded memory and lets them cool down', () => {
    const clock = new ManualClock();
    const t = new HotKeyTracker({ capacity: 16, halfLifeMillis: 60_000, sampleEvery: 1 });
    for (let i = 0; i < 10_000; i++) {
      t.record('p', i % 10 === 0 ? 'hot' : `cold${i}`, clock.now(), 1);
      if (i % 100 === 0) clock.advance(60);
    }
    expect(t.size).toBe(16); // space-saving keeps any key above 1/capacity of the traffic
    const top = t.top(clock.now(), 1)[0]!;
    expect(top.key).toBe('hot');
    const before = top.perMinute;
    clock.advance(120_000); // two half-lives
    expect(t.top(clock.now(), 1)[0]!.perMinute).toBeCloseTo(before / 4, 5);
  });
});
