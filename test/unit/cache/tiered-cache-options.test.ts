import { TieredCache } from '../../../src/cache/tiered-cache';

describe('TieredCache options', () => {
  it('refuses an unknown policy and an l2 policy without an L2 tier', () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    expect(() => cache.peek('nope', 'k')).toThrow(/Unknown cache policy `nope`; configured policies: p/);
    expect(() => new TieredCache({ policies: { p: {} } })).toThrow(/`l2`/);
  });
});
