import { TieredCache } from '../../../src/cache/tiered-cache';

describe('values kept in L1', () => {
  it('keeps L1 values frozen and identical to a serializer round trip', async () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    await cache.set('p', 'k', { at: new Date(5), n: 1n, cls: new (class { x = 1 })() });
    const v = cache.peek<{ at: Date; n: bigint; cls: object }>('p', 'k')!;
    expect(v).toEqual({ at: new Date(5), n: 1n, cls: { x: 1 } });
    expect(Object.isFrozen(v)).toBe(true);
  });
  it('a Float64Array comes back from L1 as a Float64Array, not a plain object', async () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    await cache.set('p', 'k', { samples: new Float64Array([0.5, 1e-300]) });
    const v = cache.peek<{ samples: Float64Array }>('p', 'k')!;
    expect(v.samples).toBeInstanceOf(Float64Array);
    expect([...v.samples]).toEqual([0.5, 1e-300]);
  });
});
