import { ErrorCodes } from '../../../src/kernel/errors';
import { TieredCache } from '../../../src/cache/tiered-cache';

describe('undefined is never a cached value', () => {
  it('set(k, undefined) is refused before anything is saved; a loader returning undefined is not cached', async () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    let saved = 0;
    await expect(cache.set('p', 'k', undefined, { save: async () => void saved++ })).rejects.toMatchObject({
      code: ErrorCodes.CACHE_SERIALIZATION,
      message: expect.stringMatching(/Cannot cache `undefined`: it means "no value"/),
    });
    expect(saved).toBe(0);
    expect(cache.stats().policies.p!.l1.size).toBe(0);

    let loads = 0;
    expect(await cache.getOrLoad('p', 'k', async () => (loads++, undefined))).toBeUndefined();
    expect(await cache.getOrLoad('p', 'k', async () => (loads++, undefined))).toBeUndefined();
    expect(loads).toBe(2); // not cached: the second call loads again
    // null is a value: cached like any other.
    expect(await cache.getOrLoad('p', 'n', async () => (loads++, null))).toBeNull();
    expect(await cache.getOrLoad('p', 'n', async () => (loads++, 'other'))).toBeNull();
    expect(loads).toBe(3);
  });
});
