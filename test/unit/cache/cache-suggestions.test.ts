import { ManualClock } from '../../../src/kernel/clock';
import { TieredCache } from '../../../src/cache/tiered-cache';

describe('suggestions from access statistics', () => {
  it('a key read far more often than its TTL allows is reported hot, with a longer-TTL suggestion', async () => {
    const clock = new ManualClock();
    const cache = new TieredCache({ policies: { short: { ttlMillis: 10_000, levels: ['l1'] } }, clock, hotKeys: { sampleEvery: 1 } });
    await cache.set('short', 'k', 1);
    for (let i = 0; i < 200; i++) cache.peek('short', 'k');
    expect(cache.hotKeys(1)[0]).toMatchObject({ policy: 'short', key: 'k' });
    expect(cache.suggestions().map((s) => s.kind)).toContain('hot-key-longer-ttl');
  });
});
