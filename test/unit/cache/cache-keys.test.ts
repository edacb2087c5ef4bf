import { ErrorCodes } from '../../../src/kernel/errors';
import { CacheKeyError } from '../../../src/cache/cache-errors';
import { TieredCache } from '../../../src/cache/tiered-cache';

describe('cache keys: one rule for every call', () => {
  it('1, 1n and "1" are one entry: a write under one form replaces what the others read', async () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    await cache.set('p', 1, 'one');
    expect(cache.peek('p', '1')).toBe('one');
    expect(cache.peek('p', 1n)).toBe('one');
    await cache.set('p', '1', 'uno');
    expect(cache.peek('p', 1)).toBe('uno');
    await cache.invalidate('p', [1n]);
    expect(cache.peek('p', '1')).toBeUndefined();
    expect(await cache.getOrLoad('p', -0, async () => 'zero')).toBe('zero');
    expect(cache.peek('p', '0')).toBe('zero');
    const handle = cache.forPolicy<string>('p');
    await handle.set(9007199254740993n, 'big');
    expect(handle.peek('9007199254740993')).toBe('big');
    expect(await cache.getMany('p', [1, '0', 9007199254740993n])).toEqual([undefined, 'zero', 'big']);
  });

  it('refuses undefined, null, floats, booleans and objects as keys, with a clear coded error, on every call', async () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    const handle = cache.forPolicy('p');
    for (const bad of [undefined, null, 1.5, NaN, Number.MAX_SAFE_INTEGER + 1, true, {}, [], Symbol('k')]) {
      const calls: (() => unknown)[] = [
        () => cache.peek('p', bad as never),
        () => cache.get('p', bad as never),
        () => cache.getOrLoad('p', bad as never, async () => 1),
        () => cache.set('p', bad as never, 1),
        () => cache.invalidate('p', ['ok', bad as never]),
        () => cache.delete('p', bad as never),
        () => cache.getMany('p', [bad as never]),
        () => cache.warmUp('p', [bad as never], async () => 1),
        () => handle.peek(bad as never),
        () => handle.getOrLoad(bad as never, async () => 1),
      ];
      for (const call of calls) {
        let error: unknown;
        try {
          await call();
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(CacheKeyError);
        expect(error).toMatchObject({ code: ErrorCodes.CACHE_SERIALIZATION, message: expect.stringMatching(/^Invalid cache key/) });
      }
    }
    expect(() => cache.peek('p', undefined as never)).toThrow(/Invalid cache key undefined: a key is a string, or a safe integer or bigint/);
    expect(() => cache.invalidate('p', 'k' as never)).toThrow(/invalidate take their keys as an array \(one key: \[key\]\)/); // thrown at the call, like an unknown policy
    expect(cache.stats().policies.p!.l1.size).toBe(0); // nothing was stored under a refused key
  });
});
