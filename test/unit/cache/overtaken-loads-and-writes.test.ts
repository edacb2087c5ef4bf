import { TieredCache } from '../../../src/cache/tiered-cache';

describe('loads and writes that an invalidation overtook fill nothing (L1 only)', () => {
  const deferred = <T>() => {
    let resolve!: (v: T) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
    return { promise, resolve, reject };
  };

  it('does not fill L1 with a load that an invalidation overtook', async () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    let release!: (v: string) => void;
    const load = cache.getOrLoad('p', 'k', () => new Promise<string>((r) => (release = r)));
    await cache.invalidate('p', ['k']);
    release('old');
    expect(await load).toBe('old');
    expect(cache.peek('p', 'k')).toBeUndefined();
    expect(cache.stats().policies.p!.staleFillsPrevented).toBe(1);
  });

  it('a caller arriving after an invalidation does not join the load that started before it', async () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    const first = deferred<string>();
    const before = cache.getOrLoad('p', 'k', () => first.promise);
    await cache.invalidate('p', ['k']);
    let secondCalls = 0;
    const after = cache.getOrLoad('p', 'k', async () => (secondCalls++, 'new'));
    first.resolve('old');
    expect(await before).toBe('old'); // its own caller: concurrent with the invalidation
    expect(await after).toBe('new');
    expect(secondCalls).toBe(1);
    expect(cache.peek('p', 'k')).toBe('new');
  });


  it('set() overtaken by an invalidation of its key during the save leaves nothing in L1', async () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    const saving = deferred<void>();
    const write = cache.set('p', 'k', 'mine', { save: () => saving.promise });
    await cache.invalidate('p', ['k']); // e.g. a newer write elsewhere, told on the bus
    saving.resolve();
    await write;
    expect(cache.peek('p', 'k')).toBeUndefined();
    // Uncontended, write-through fills L1.
    await cache.set('p', 'k', 'again', { save: async () => {} });
    expect(cache.peek('p', 'k')).toBe('again');
  });

});
