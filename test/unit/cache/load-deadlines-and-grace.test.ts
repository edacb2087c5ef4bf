import { ManualClock } from '../../../src/kernel/clock';
import { ErrorCodes } from '../../../src/kernel/errors';
import { TieredCache } from '../../../src/cache/tiered-cache';

describe('loads with deadlines and grace (L1 only, injected clock)', () => {
  const deferred = <T>() => {
    let resolve!: (v: T) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
    return { promise, resolve, reject };
  };

  it('serves stale within grace while one background load refreshes, and times loaders out', async () => {
    const clock = new ManualClock();
    const cache = new TieredCache({ policies: { p: { ttlMillis: 1000, graceMillis: 5000, levels: ['l1'], hardTimeoutMillis: 50 } }, clock });
    let n = 0;
    expect(await cache.getOrLoad('p', 'k', async () => ++n)).toBe(1);
    clock.advance(1500);
    expect(await cache.getOrLoad('p', 'k', async () => ++n)).toBe(1); // stale, refreshing
    await new Promise((r) => setImmediate(r));
    expect(await cache.getOrLoad('p', 'k', async () => ++n)).toBe(2);
    // Hard timeout with no stale value.
    const pending = cache.getOrLoad('p', 'other', () => new Promise<number>(() => {}));
    clock.advance(50);
    await expect(pending).rejects.toMatchObject({ code: ErrorCodes.CACHE_LOADER_TIMEOUT });
  });

  it('a stale value within grace is never served after an invalidation (soft timeout, hard timeout, loader error)', async () => {
    const clock = new ManualClock();
    const cache = new TieredCache({
      policies: { p: { levels: ['l1'], ttlMillis: 1000, graceMillis: 10_000, softTimeoutMillis: 100, hardTimeoutMillis: 1000 } },
      clock,
    });
    await cache.set('p', 'k', 'v1');
    await cache.set('p', 'e', 'e1');
    clock.advance(1500); // both stale, within grace
    const slow = deferred<string>();
    const read = cache.getOrLoad('p', 'k', () => slow.promise);
    const failing = deferred<string>();
    const readE = cache.getOrLoad('p', 'e', () => failing.promise);
    await cache.invalidate('p', ['k', 'e']);
    let settled = false;
    void read.then(
      () => (settled = true),
      () => (settled = true),
    );
    clock.advance(100); // soft timeout: the stale value is gone, keep waiting
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    failing.reject(new Error('db down'));
    await expect(readE).rejects.toThrow('db down'); // not the invalidated 'e1'
    clock.advance(900); // hard timeout
    await expect(read).rejects.toMatchObject({ code: ErrorCodes.CACHE_LOADER_TIMEOUT });
    // Without an invalidation, the soft timeout still serves stale.
    await cache.set('p', 'k2', 'v2');
    clock.advance(1500);
    const read2 = cache.getOrLoad('p', 'k2', () => new Promise<string>(() => {}));
    clock.advance(100);
    expect(await read2).toBe('v2');
  });

});
