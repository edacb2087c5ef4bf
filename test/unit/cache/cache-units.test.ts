import { ConfigError, ErrorCodes } from '../../../src/kernel/errors';
import { CacheValueTooLargeError, CacheSerializationError } from '../../../src/cache/cache-errors';
import { ManualClock } from '../../../src/kernel/clock';
import { CACHE_POLICY_DEFAULTS, EXAMPLE_POLICIES, resolvePolicies, resolvePolicy } from '../../../src/cache/cache-policy';
import { CircuitBreaker } from '../../../src/cache/circuit-breaker';
import { HashRing } from '../../../src/kernel/hash-ring';
import { HotKeyTracker } from '../../../src/cache/hot-key-tracker';
import { MemoryTier, type CacheEntry } from '../../../src/cache/memory-tier';
import { createSerializer } from '../../../src/cache/serializer';
import { SingleFlight } from '../../../src/cache/single-flight';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { InvalidationBus, type PubSubLike } from '../../../src/cache/invalidation-bus';
import { closeRedisClient, redisSubscriberDefaults, type ClosableRedis } from '../../../src/cache/redis-client';
import { EventEmitter } from 'node:events';
import { decodeEntry, encodeEntry } from '../../../src/cache/cache-entry';
import type { RedisLike } from '../../../src/cache/l2-tier';
import { clusterRedisTier } from '../../../src/cache/redis-cluster-tier';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';

describe('serializer', () => {
  const s = createSerializer({ maxValueBytes: 200 });
  it('round-trips Dates, BigInts, Buffers, Maps, Sets, special numbers and nesting', () => {
    const value = {
      at: new Date('2024-01-02T03:04:05.678Z'),
      big: 9007199254740993n,
      buf: Buffer.from([0, 1, 255]),
      m: new Map<unknown, unknown>([['k', { d: new Date(0) }]]),
      s: new Set([1, 'two']),
      arr: [1, undefined, NaN, -Infinity],
      $: 'a user key named $',
      nested: { deep: [{ $: { t: 'x' } }] },
    };
    const big = createSerializer();
    const back = big.deserialize(big.serialize(value)) as typeof value;
    expect(back).toEqual(value);
    expect(back.at).toBeInstanceOf(Date);
    expect(typeof back.big).toBe('bigint');
    expect(Buffer.isBuffer(back.buf)).toBe(true);
    expect(back.m.get('k')).toEqual({ d: new Date(0) });
    expect(s.deserialize(s.serialize(undefined))).toBeUndefined();
    expect(s.deserialize(s.serialize('plain'))).toBe('plain');
  });
  it('refuses values over the limit with a clear error', () => {
    const err = (() => {
      try {
        s.serialize('x'.repeat(500));
      } catch (e) {
        return e as CacheValueTooLargeError;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(CacheValueTooLargeError);
    expect(err!.code).toBe(ErrorCodes.CACHE_VALUE_TOO_LARGE);
    expect(err!.message).toMatch(/502 bytes.*200 bytes.*maxValueBytes/);
  });
  it('refuses functions and cycles, naming where', () => {
    expect(() => s.serialize({ a: { f: () => 1 } })).toThrow(/function \(at \$\.a\.f\)/);
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    expect(() => s.serialize(cyc)).toThrow(CacheSerializationError);
  });
});

describe('cache policies', () => {
  it('validates and names the option', () => {
    expect(() => resolvePolicy('user_data', { ttlMillis: -1 })).toThrow(/`policies\.user_data\.ttlMillis`/);
    expect(() => resolvePolicy('p', { levels: [] })).toThrow(/`policies\.p\.levels`/);
    expect(() => resolvePolicy('p', { levels: ['l3' as 'l1'] })).toThrow(/unknown level "l3"/);
    expect(() => resolvePolicy('p', { ttl: 5 } as never)).toThrow(/`policies\.p\.ttl`: unknown option/);
    expect(() => resolvePolicy('p', { softTimeoutMillis: 10, hardTimeoutMillis: 5 })).toThrow(ConfigError);
    expect(() => resolvePolicies({})).toThrow(/`policies`/);
  });
  it('has frozen defaults and keeps no reference to the options', () => {
    expect(Object.isFrozen(CACHE_POLICY_DEFAULTS)).toBe(true);
    const opts = { ttlMillis: 1000, levels: ['l1' as const] };
    const p = resolvePolicy('x', opts);
    opts.levels.push('l2' as never);
    expect(p.levels).toEqual(['l1']);
    expect(Object.isFrozen(p)).toBe(true);
  });
  it('resolves the example policies of the original design', () => {
    const all = resolvePolicies(EXAMPLE_POLICIES);
    expect(all.get('analysis_results')).toMatchObject({ ttlMillis: 7_200_000, useL1: false, useL2: true, writeThrough: false });
    expect(all.get('user_data')).toMatchObject({ ttlMillis: 3_600_000, maxEntries: 10_000, cacheAside: false });
  });
});

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
});

describe('single-flight', () => {
  it('runs one loader per key and marks flights stale', async () => {
    const sf = new SingleFlight<number>();
    let calls = 0;
    let release!: (v: number) => void;
    const run = () => {
      calls++;
      return new Promise<number>((r) => (release = r));
    };
    const a = sf.run('k', ['t'], run);
    const b = sf.run('k', ['t'], run);
    expect(a).toBe(b);
    sf.markWhere((f) => f.tags.includes('t'));
    expect(a.stale).toBe(true);
    release(7);
    expect(await Promise.all([a.promise, b.promise])).toEqual([7, 7]);
    expect(calls).toBe(1);
    expect(sf.size).toBe(0);
  });
});

describe('circuit breaker', () => {
  it('opens after the threshold, probes once after openMillis, closes on success', () => {
    const clock = new ManualClock();
    const states: string[] = [];
    const b = new CircuitBreaker(clock, { failureThreshold: 2, openMillis: 1000 }, (s) => states.push(s));
    b.failure();
    expect(b.allow()).toBe(true);
    b.failure();
    expect(b.allow()).toBe(false);
    clock.advance(999);
    expect(b.allow()).toBe(false);
    clock.advance(1);
    expect(b.allow()).toBe(true); // the probe
    expect(b.allow()).toBe(false); // only one
    b.failure();
    expect(b.state).toBe('open');
    clock.advance(1000);
    expect(b.allow()).toBe(true);
    b.success();
    expect(b.state).toBe('closed');
    expect(states).toEqual(['open', 'halfOpen', 'open', 'halfOpen', 'closed']);
    expect(() => new CircuitBreaker(clock, { failureThreshold: 0 })).toThrow(/`breaker\.failureThreshold`/);
  });
});

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
  it('feeds suggestions of the tiered cache', async () => {
    const clock = new ManualClock();
    const cache = new TieredCache({ policies: { short: { ttlMillis: 10_000, levels: ['l1'] } }, clock, hotKeys: { sampleEvery: 1 } });
    await cache.set('short', 'k', 1);
    for (let i = 0; i < 200; i++) cache.peek('short', 'k');
    expect(cache.hotKeys(1)[0]).toMatchObject({ policy: 'short', key: 'k' });
    expect(cache.suggestions().map((s) => s.kind)).toContain('hot-key-longer-ttl');
  });
});

describe('hash ring', () => {
  const keys = Array.from({ length: 100_000 }, (_, i) => `user:${i}`);
  const owners = (ring: HashRing) => keys.map((k) => ring.owner(k));
  it('spreads keys evenly over 150 virtual nodes per server', () => {
    const ring = new HashRing(['a', 'b', 'c']);
    const counts = new Map<string, number>();
    for (const o of owners(ring)) counts.set(o, (counts.get(o) ?? 0) + 1);
    for (const c of counts.values()) expect(Math.abs(c / keys.length - 1 / 3)).toBeLessThan(0.07);
  });
  it('adding a fourth server remaps at most 30% of 100,000 keys, all to the new server', () => {
    const before = owners(new HashRing(['a', 'b', 'c']));
    const after = owners(new HashRing(['a', 'b', 'c', 'd']));
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] !== after[i]) {
        moved++;
        expect(after[i]).toBe('d');
      }
    }
    const share = moved / keys.length;
    console.log(`ring: adding a 4th server remapped ${(share * 100).toFixed(2)}% of ${keys.length} keys`);
    expect(share).toBeLessThanOrEqual(0.3);
    expect(share).toBeGreaterThan(0.15);
  });
  it('removing a server remaps only its keys', () => {
    const before = owners(new HashRing(['a', 'b', 'c', 'd']));
    const after = owners(new HashRing(['a', 'b', 'd']));
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] !== after[i]) {
        moved++;
        expect(before[i]).toBe('c');
      } else expect(before[i]).not.toBe('c');
    }
    console.log(`ring: removing 1 of 4 servers remapped ${((moved / keys.length) * 100).toFixed(2)}% of keys (only its own)`);
  });
  it('walks to the next server as the stand-in', () => {
    const ring = new HashRing(['a', 'b', 'c']);
    const w = ring.walk('some-key');
    expect(w).toHaveLength(3);
    expect(ring.members[w[0]!]).toBe(ring.owner('some-key'));
  });
});

describe('tiered cache (L1 only, injected clock)', () => {
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
  it('keeps L1 values frozen and identical to a serializer round trip', async () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    await cache.set('p', 'k', { at: new Date(5), n: 1n, cls: new (class { x = 1 })() });
    const v = cache.peek<{ at: Date; n: bigint; cls: object }>('p', 'k')!;
    expect(v).toEqual({ at: new Date(5), n: 1n, cls: { x: 1 } });
    expect(Object.isFrozen(v)).toBe(true);
  });
  it('refuses an unknown policy and an l2 policy without an L2 tier', () => {
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } } });
    expect(() => cache.peek('nope', 'k')).toThrow(/Unknown cache policy `nope`; configured policies: p/);
    expect(() => new TieredCache({ policies: { p: {} } })).toThrow(/`l2`/);
  });
});

describe('closing (fake clients with the ioredis members the cache uses)', () => {
  /** A stand-in for an ioredis client: status, quit/disconnect, pub/sub, and the 'end' event. */
  class FakeClient extends EventEmitter implements PubSubLike, ClosableRedis {
    calls: string[] = [];
    constructor(
      public status: string,
      readonly options: object = { autoResubscribe: false },
    ) {
      super();
    }
    async publish(): Promise<unknown> {
      return 1;
    }
    async subscribe(): Promise<unknown> {
      this.calls.push('subscribe');
      return 1;
    }
    async unsubscribe(): Promise<unknown> {
      this.calls.push('unsubscribe');
      return 1;
    }
    async quit(): Promise<unknown> {
      this.calls.push('quit');
      if (this.status !== 'ready') throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
      queueMicrotask(() => ((this.status = 'end'), this.emit('end')));
      return 'OK';
    }
    disconnect(): void {
      this.calls.push('disconnect');
      this.status = 'end';
    }
  }

  it('the bus refuses a subscriber that resubscribes by itself, naming the option', () => {
    const pub = new FakeClient('ready');
    expect(() => new InvalidationBus({ publisher: pub, subscriber: new FakeClient('ready', { autoResubscribe: true }) })).toThrow(ConfigError);
    expect(() => new InvalidationBus({ publisher: pub, subscriber: new FakeClient('ready', { autoResubscribe: true }) })).toThrow(/bus\.subscriber\.options\.autoResubscribe/);
    expect(redisSubscriberDefaults.autoResubscribe).toBe(false);
    expect(redisSubscriberDefaults.enableOfflineQueue).toBe(false);
  });

  it('closeRedisClient quits a ready client and disconnects one that is reconnecting (quit would leave it retrying)', async () => {
    const readyClient = new FakeClient('ready');
    await closeRedisClient(readyClient);
    expect(readyClient.calls).toEqual(['quit']);
    expect(readyClient.status).toBe('end');
    const reconnecting = new FakeClient('reconnecting');
    await closeRedisClient(reconnecting);
    expect(reconnecting.calls).toEqual(['disconnect']);
    const ended = new FakeClient('end');
    await closeRedisClient(ended);
    expect(ended.calls).toEqual([]);
  });

  it('TieredCache.close() closes the bus, then ends closeClients in any state; twice is fine', async () => {
    const data = new FakeClient('ready');
    const sub = new FakeClient('ready');
    const bus = new InvalidationBus({ publisher: data, subscriber: sub });
    await bus.start();
    sub.status = 'reconnecting'; // Redis went away meanwhile
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } }, bus, closeClients: [data, sub] });
    await Promise.all([cache.close(), cache.close()]);
    expect(sub.calls).toEqual(['subscribe', 'disconnect']); // no unsubscribe on a dead connection
    expect(data.calls).toEqual(['quit']);
    expect(sub.listenerCount('message') + sub.listenerCount('ready') + sub.listenerCount('close')).toBe(0);
    expect(await cache.getOrLoad('p', 'k', async () => 1)).toBe(1); // still usable on L1 and the loader
  });
});

describe('review fixes: races and edge cases (L1 only, injected clock)', () => {
  const deferred = <T>() => {
    let resolve!: (v: T) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
    return { promise, resolve, reject };
  };

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

  it('serializer: -0, __proto__ keys, user objects and strings that look like internal markers', () => {
    const s = createSerializer();
    expect(Object.is(s.deserialize(s.serialize(-0)), -0)).toBe(true);
    expect(Object.is((s.deserialize(s.serialize([-0, 0])) as number[])[0], -0)).toBe(true);
    const proto = JSON.parse('{"__proto__": {"polluted": 1}, "a": 1}') as object;
    const back = s.deserialize(s.serialize(proto)) as Record<string, unknown>;
    expect(Object.prototype.hasOwnProperty.call(back, '__proto__')).toBe(true);
    expect((back as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    const lookalikes = [{ $: 'd', v: 0 }, { $: 'b', v: '1' }, { $: 'u' }, { $: 'o', v: { $: 'M' } }, '{"$":"u"}', '$', { v: { $: 'S', v: [] } }];
    for (const v of lookalikes) expect(s.deserialize(s.serialize(v))).toEqual(v);
    expect(s.deserialize(s.serialize(null))).toBeNull();
    expect(s.deserialize(s.serialize({ a: undefined, b: null }))).toEqual({ b: null });
    // A damaged payload whose marker names an Object method is refused, not called.
    expect(() => s.deserialize('{"$":"toString","v":1}')).toThrow(CacheSerializationError);
  });

  it('L2 entries keep tags containing `|`, and a damaged header decodes as nothing instead of throwing', () => {
    const text = encodeEntry('"v"', 10, 20, 7, [['a|b', 3]]);
    expect(decodeEntry(text)).toEqual({ freshUntil: 10, staleUntil: 20, nsEpoch: 7, tags: [['a|b', 3]], payload: '"v"' });
    expect(decodeEntry('1|10|20|7|[["a|b",3]]|"v"')).toBeNull();
    expect(decodeEntry('1|x|20|7||"v"')).toBeNull();
  });

  it('L2 tiers refuse an ioredis client without a per-command timeout, naming the option', () => {
    const fake = { get: async () => null, evalsha: async () => null, options: { enableOfflineQueue: false } };
    expect(() => singleRedisTier({ client: fake as unknown as RedisLike })).toThrow(/client\.options\.commandTimeout/);
    const cluster = { ...fake, nodes: () => [], options: { enableOfflineQueue: false, redisOptions: {} } };
    expect(() => clusterRedisTier({ cluster: cluster as unknown as RedisLike })).toThrow(/cluster\.options\.redisOptions\.commandTimeout/);
    expect(() => singleRedisTier({ client: { ...fake, options: { enableOfflineQueue: false, commandTimeout: 500 } } as unknown as RedisLike })).not.toThrow();
  });
});
