import { ManualClock } from '../../../src/kernel/clock';
import { MemoryTier, type CacheEntry } from '../../../src/cache/memory-tier';

describe('memory tier', () => {
  const entry = (size: number, freshUntil: number, staleUntil = freshUntil): CacheEntry => ({ value: size, size, freshUntil, staleUntil, nsEpoch: 0, tags: null });
  it('expires on the injected clock, serving until staleUntil', () => {
    const clock = new ManualClock();
    const t = new MemoryTier();
    t.set('a', entry(1, clock.now() + 100, clock.now() + 150));
    expect(t.get('a', clock.now())?.value).toBe(1);
    clock.advance(120);
    expect(t.get('a', clock.now())).toBeDefined(); // within grace
    clock.advance(30);
    expect(t.get('a', clock.now())).toBeUndefined();
    expect(t.expirations).toBe(1);
  });
  it('is bounded by count and by bytes, counting evictions', () => {
    const byCount = new MemoryTier({ maxEntries: 3, maxBytes: 1e6 });
    for (let i = 0; i < 5; i++) byCount.set(`k${i}`, entry(10, Infinity));
    expect(byCount.size).toBe(3);
    expect(byCount.evictions).toBe(2);
    const byBytes = new MemoryTier({ maxEntries: 100, maxBytes: 100 });
    for (let i = 0; i < 5; i++) byBytes.set(`k${i}`, entry(40, Infinity));
    expect(byBytes.bytes).toBeLessThanOrEqual(100);
    expect(byBytes.size).toBe(2);
  });
  it('counts keys in maxBytes: large keys with tiny values are bounded too', () => {
    const t = new MemoryTier({ maxEntries: 1000, maxBytes: 10_000 });
    for (let i = 0; i < 50; i++) t.set(`${i}:`.padEnd(1_000, 'k'), entry(2, Infinity));
    expect(t.bytes).toBeLessThanOrEqual(10_000);
    expect(t.size).toBe(9); // 1 002 bytes each: keys count, not only the 2-byte values
    expect(t.evictions).toBe(41);
  });
});
