import { EventEmitter } from 'node:events';
import { ConfigError } from '../kernel/errors';
import { CacheLoaderTimeoutError, CacheValueTooLargeError, UnknownCachePolicyError } from './cache-errors';
import { systemClock, type Cancel, type Clock } from '../kernel/clock';
import { decodeEntry, deepFreeze, encodeEntry } from './cache-entry';
import { resolvePolicies, type CachePolicy, type CachePolicyOptions } from './cache-policy';
import { rate, TierCounters, tierStats, type CacheStats, type PolicyStats } from './cache-stats';
import { HotKeyTracker, type HotKey, type HotKeyTrackerOptions } from './hot-key-tracker';
import type { BusMessage, InvalidationBus } from './invalidation-bus';
import { MemoryTier, type CacheEntry, type TagStamp } from './memory-tier';
import { closeRedisClients, type ClosableRedis } from './redis-client';
import type { L2Tier, VersionToken } from './l2-tier';
import { createSerializer, type CacheSerializer } from './serializer';
import { SingleFlight, type Flight } from './single-flight';

/** Options of {@link TieredCache}. */
export interface TieredCacheOptions {
  /** Named policies (data classes); see {@link CachePolicyOptions}. At least one. */
  policies: Readonly<Record<string, CachePolicyOptions>>;
  /**
   * The L2 tier (`singleRedisTier`, `clusterRedisTier` or `ringRedisTier`). Required when a policy uses `l2`.
   * @default undefined (L1 only)
   */
  l2?: L2Tier;
  /**
   * The invalidation bus; without it, other instances learn of changes only through L2 and TTLs.
   * @default undefined
   */
  bus?: InvalidationBus;
  /**
   * Largest serialized value accepted, in bytes (when `serializer` is not given).
   * @default 1_048_576
   */
  maxValueBytes?: number;
  /**
   * Serializer for both tiers.
   * @default createSerializer({ maxValueBytes })
   */
  serializer?: CacheSerializer;
  /**
   * Clock for TTLs, grace, loader timeouts, hot-key decay (`now()`, wall time: expiry times are
   * stored in Redis and shared by instances) and bus delivery times (`monotonicNow()`).
   * @default systemClock
   */
  clock?: Clock;
  /**
   * Hot-key tracking, or `false` to turn it off.
   * @default { capacity: 64, halfLifeMillis: 60_000, sampleEvery: 16 }
   */
  hotKeys?: HotKeyTrackerOptions | false;
  /**
   * Invalidations that could not reach Redis are kept (and their keys bypass L2) until Redis is
   * back; beyond this many, the whole policy bypasses L2 until its namespace is bumped.
   * @default 10_000
   */
  maxPendingInvalidations?: number;
  /**
   * Deep-freeze values kept in L1 so a caller cannot change a value other callers share.
   * @default true
   */
  freezeValues?: boolean;
  /**
   * Redis clients this cache owns (typically the data and subscriber clients created for it):
   * `close()` ends them with {@link closeRedisClient} once the bus and the L2 tier are closed,
   * whatever their state (ready, reconnecting, or never connected). Clients not listed are left open.
   * @default []
   */
  closeClients?: readonly ClosableRedis[];
}

/** Defaults of {@link TieredCacheOptions}. */
export const TIERED_CACHE_DEFAULTS = Object.freeze({ maxValueBytes: 1_048_576, maxPendingInvalidations: 10_000, freezeValues: true });

/** Options of one `getOrLoad` call. */
export interface LoadOptions {
  /** Tags of the value, for `invalidateTags` (e.g. table names). */
  tags?: readonly string[];
}

/** Options of one `set` call. */
export interface SetOptions<T> {
  /** Writes the value to the source of truth first; when it throws, the cache is not touched. */
  save?: (value: T) => Promise<unknown>;
  /** Tags of the value. */
  tags?: readonly string[];
}

/** Result of {@link TieredCache.warmUp}. */
export interface WarmUpResult {
  readonly loaded: number;
  readonly alreadyCached: number;
  readonly failed: readonly { readonly key: string; readonly error: unknown }[];
}

/** A suggestion from access statistics (the original design's `IntelligentCacheManager`). */
export interface CacheSuggestion {
  readonly kind: 'hot-key-add-l1' | 'hot-key-longer-ttl' | 'cold-keys-shorter-ttl' | 'l1-too-small';
  readonly policy: string;
  readonly key?: string;
  readonly message: string;
}

/** Events of {@link TieredCache}. Listeners must not throw. */
export interface CacheEvents {
  hit: [{ policy: string; key: string; tier: 'l1' | 'l2' }];
  miss: [{ policy: string; key: string }];
  write: [{ policy: string; key: string }];
  invalidate: [{ policy: string; keys?: readonly string[]; tags?: readonly string[]; namespace?: boolean; source: 'local' | 'bus' }];
  /** A bus message from another instance was applied; `receivedAt` is a `clock.monotonicNow()` reading. */
  bus: [{ message: BusMessage; receivedAt: number }];
  /** Something failed and the cache carried on (L2 down, value too large on load, …). */
  error: [{ policy?: string; key?: string; error: unknown }];
}

const NS = (policy: string): string => `ns:${policy}`;
const flightKey = (policy: string, key: string): string => `${policy}\u0000${key}`;
const NOT_FOUND = Symbol('notFound');

/** A `set` in progress (see `TieredCache.writing`). */
interface WriteInFlight {
  readonly key: string;
  readonly tags: readonly string[];
  overtaken: boolean;
}

class PolicyState {
  readonly l1: MemoryTier | null;
  readonly l1c = new TierCounters();
  readonly l2c = new TierCounters();
  loads = 0;
  loadErrors = 0;
  staleServed = 0;
  staleFillsPrevented = 0;
  /** The namespace epoch in Redis as last seen; `undefined` until read (and after a bus reconnect). */
  nsEpoch: number | undefined = undefined;
  /** Bumped by every invalidation of this policy; batch backfills skip when it moved. */
  invalidationSeq = 0;
  /** Whether the policy bypasses L2 until its namespace can be bumped (pending queue overflowed). */
  l2Bypass = false;
  constructor(readonly policy: CachePolicy) {
    this.l1 = policy.useL1 ? new MemoryTier({ maxEntries: policy.maxEntries, maxBytes: policy.maxBytes }) : null;
  }
}

/**
 * The multi-level cache: L1 in process, L2 in Redis, coherent across instances through the
 * invalidation bus, safe against stampedes (single-flight) and stale fills (versioned fills).
 * Redis being down never fails a read: reads fall through to L1 and the loader.
 */
export class TieredCache {
  /** Events; see {@link CacheEvents}. */
  readonly events = new EventEmitter<CacheEvents>();
  private readonly states = new Map<string, PolicyState>();
  private readonly l2: L2Tier | undefined;
  private readonly bus: InvalidationBus | undefined;
  private readonly serializer: CacheSerializer;
  private readonly clock: Clock;
  private readonly hot: HotKeyTracker | null;
  private readonly hotMask: number;
  private hotCounter = 0;
  private readonly freeze: boolean;
  private readonly maxPending: number;
  private readonly flights = new SingleFlight<unknown>();
  /** `set` calls between their source-of-truth write and their L1 fill; an invalidation of the key marks them overtaken. */
  private readonly writing = new Set<WriteInFlight>();
  /** Tag epochs as last seen (from Redis or the bus). */
  private readonly tagEpochs = new Map<string, number>();
  /** Source of local-only epochs: negative and never reused, so they never equal a Redis epoch or an old stamp. */
  private localEpoch = 0;
  /** Invalidations Redis did not take yet: keys by policy, tags, namespaces. */
  private readonly pendingKeys = new Map<string, Set<string>>();
  private readonly pendingTags = new Set<string>();
  private readonly pendingNamespaces = new Set<string>();
  private pendingCount = 0;
  private flushing: Promise<void> | null = null;
  private busReceived = 0;
  private busPublished = 0;
  private busReconnects = 0;
  private listeningHits = false;
  private readonly unsubscribers: (() => void)[] = [];
  private readonly ownedClients: readonly ClosableRedis[];
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(options: TieredCacheOptions) {
    if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'must be an object');
    const policies = resolvePolicies(options.policies);
    this.l2 = options.l2;
    for (const p of policies.values()) {
      if (p.useL2 && this.l2 === undefined) throw new ConfigError('l2', `policy \`${p.name}\` uses level 'l2' but no L2 tier was given`);
      this.states.set(p.name, new PolicyState(p));
    }
    this.bus = options.bus;
    this.ownedClients = [...(options.closeClients ?? [])];
    const maxValueBytes = options.maxValueBytes ?? TIERED_CACHE_DEFAULTS.maxValueBytes;
    if (!Number.isSafeInteger(maxValueBytes) || maxValueBytes < 1) throw new ConfigError('maxValueBytes', `must be an integer ≥ 1, got ${maxValueBytes}`);
    this.serializer = options.serializer ?? createSerializer({ maxValueBytes });
    this.clock = options.clock ?? systemClock;
    this.maxPending = options.maxPendingInvalidations ?? TIERED_CACHE_DEFAULTS.maxPendingInvalidations;
    if (!Number.isSafeInteger(this.maxPending) || this.maxPending < 0) throw new ConfigError('maxPendingInvalidations', `must be an integer ≥ 0, got ${this.maxPending}`);
    this.freeze = options.freezeValues ?? TIERED_CACHE_DEFAULTS.freezeValues;
    this.hot = options.hotKeys === false ? null : new HotKeyTracker(options.hotKeys ?? {});
    // Sample one access in 2^k (the power of two at or below sampleEvery): a mask test on the hit path.
    this.hotMask = this.hot === null ? 0 : 2 ** Math.floor(Math.log2(this.hot.sampleEvery)) - 1;
    const raw = this.events as EventEmitter;
    raw.on('newListener', (e: string) => {
      if (e === 'hit') this.listeningHits = true;
    });
    raw.on('removeListener', () => {
      this.listeningHits = this.events.listenerCount('hit') > 0;
    });
    // EventEmitter throws on 'error' without a listener; the cache reports errors, it never throws them.
    this.events.on('error', () => {});
    if (this.bus !== undefined) {
      this.unsubscribers.push(this.bus.subscribe((m) => this.applyBusMessage(m)));
      this.unsubscribers.push(this.bus.onReconnect(() => this.onBusReconnect()));
    }
    if (this.l2 !== undefined) this.unsubscribers.push(this.l2.onRecover(() => void this.flushPending()));
  }

  /** Names of the configured policies. */
  get policyNames(): readonly string[] {
    return [...this.states.keys()];
  }

  /** The resolved policy. */
  policy(name: string): CachePolicy {
    return this.state(name).policy;
  }

  /** A handle bound to one policy, saving the policy lookup on every call. */
  forPolicy<T = unknown>(name: string): PolicyCache<T> {
    return new PolicyCache<T>(this, this.state(name));
  }

  private state(name: string): PolicyState {
    const s = this.states.get(name);
    if (s === undefined) throw new UnknownCachePolicyError(name, [...this.states.keys()]);
    return s;
  }

  // ---- reads ----------------------------------------------------------------------------------

  /** Synchronous L1 lookup: the fresh value or `undefined`. The fastest path; never touches Redis. */
  peek<T = unknown>(policy: string, key: string): T | undefined {
    return this.peekIn(this.state(policy), key) as T | undefined;
  }

  /** @internal */
  peekIn(st: PolicyState, key: string): unknown {
    const l1 = st.l1;
    if (l1 === null) return undefined;
    const now = this.coarseNow();
    const e = l1.get(key, now);
    if (e !== undefined && now < e.freshUntil && (e.tags === null || this.tagsCurrent(e.tags))) return this.l1Hit(st, key, e, now);
    return undefined;
  }

  /**
   * The clock read once per millisecond on the hit path (as lru-cache's `ttlResolution` does):
   * reading the clock costs as much as the LRU lookup itself. The timer runs only while reads do.
   */
  private coarseNow(): number {
    if (this.cachedNow !== 0) return this.cachedNow;
    this.cachedNow = this.clock.now();
    this.clock.setTimeout(this.clearNow, 1);
    return this.cachedNow;
  }
  private cachedNow = 0;
  private readonly clearNow = (): void => {
    this.cachedNow = 0;
  };

  private l1Hit(st: PolicyState, key: string, e: CacheEntry, now: number): unknown {
    st.l1c.hits++;
    if (this.hot !== null && (++this.hotCounter & this.hotMask) === 0) this.hot.record(st.policy.name, key, now, this.hotMask + 1);
    if (this.listeningHits) this.events.emit('hit', { policy: st.policy.name, key, tier: 'l1' });
    return e.value;
  }

  /** L1, then L2 (backfilling L1); `undefined` when neither holds a fresh value. */
  get<T = unknown>(policy: string, key: string): Promise<T | undefined> {
    return this.getIn(this.state(policy), key) as Promise<T | undefined>;
  }

  /** @internal */
  async getIn(st: PolicyState, key: string): Promise<unknown> {
    const v = this.peekIn(st, key);
    if (v !== undefined) return v;
    if (st.l1 !== null) st.l1c.misses++;
    if (!st.policy.useL2) {
      this.emitMiss(st, key);
      return undefined;
    }
    const flight = this.flights.run(flightKey(st.policy.name, key), [], (f) => this.readL2(st, key, f).then((r) => (r === null || r.stale ? NOT_FOUND : r.value)));
    const r = await flight.promise;
    if (r === NOT_FOUND) {
      this.emitMiss(st, key);
      return undefined;
    }
    return r;
  }

  /**
   * L1 → L2 → `loader`, filling the tiers above. One loader call per key per process; a load
   * that raced an invalidation returns its value but does not fill. Loader errors reach the caller
   * unchanged (unless a stale value within grace can be served).
   */
  getOrLoad<T>(policy: string, key: string, loader: () => Promise<T>, options?: LoadOptions): Promise<T> {
    return this.getOrLoadIn(this.state(policy), key, loader, options?.tags ?? [], false) as Promise<T>;
  }

  /** @internal */
  async getOrLoadIn(st: PolicyState, key: string, loader: () => Promise<unknown>, tags: readonly string[], forceFill: boolean): Promise<unknown> {
    const now = this.clock.now();
    let stale: CacheEntry | undefined;
    if (st.l1 !== null) {
      const e = st.l1.get(key, now);
      if (e !== undefined && (e.tags === null || this.tagsCurrent(e.tags))) {
        if (now < e.freshUntil) return this.l1Hit(st, key, e, now);
        stale = e; // within grace
      }
      st.l1c.misses++;
    }
    const fk = flightKey(st.policy.name, key);
    const flight = this.flights.run(fk, tags, (f) => this.fetch(st, key, loader, tags, f, forceFill));
    if (stale === undefined) return this.awaitWithTimeouts(st, key, flight, undefined);
    if (st.policy.softTimeoutMillis === 0) {
      // Stale-while-revalidate: answer now, the flight refreshes in the background.
      flight.promise.catch((error) => this.events.emit('error', { policy: st.policy.name, key, error }));
      st.staleServed++;
      return stale.value;
    }
    return this.awaitWithTimeouts(st, key, flight, stale);
  }

  private awaitWithTimeouts(st: PolicyState, key: string, flight: Flight<unknown>, stale: CacheEntry | undefined): Promise<unknown> {
    const { softTimeoutMillis: soft, hardTimeoutMillis: hard } = st.policy;
    if (hard === 0 && (stale === undefined || soft === 0)) return flight.promise;
    return new Promise((resolve, reject) => {
      const timers: Cancel[] = [];
      let done = false;
      const finish = (fn: () => void): void => {
        if (done) return;
        done = true;
        for (const cancel of timers) cancel();
        fn();
      };
      // The stale entry may only be served while it is still the key's L1 entry with current tags:
      // an invalidation (or write-through) that arrived during the wait removed or replaced it, and
      // serving it afterwards would hand out a value older than a completed invalidation.
      const servable = (): CacheEntry | undefined => {
        if (stale === undefined || flight.stale || st.l1 === null) return undefined;
        const cur = st.l1.get(key, this.clock.now());
        return cur !== undefined && (cur.tags === null || this.tagsCurrent(cur.tags)) ? cur : undefined;
      };
      const serveStale = (e: CacheEntry): void => {
        st.staleServed++;
        resolve(e.value);
      };
      flight.promise.then(
        (v) => finish(() => resolve(v)),
        (err) => {
          const e = servable();
          finish(() => (e !== undefined ? serveStale(e) : reject(err)));
        },
      );
      if (stale !== undefined && soft > 0) {
        timers.push(
          this.clock.setTimeout(() => {
            const e = servable();
            if (e !== undefined) finish(() => serveStale(e)); // else keep waiting for the load or the hard timeout
          }, soft),
        );
      }
      if (hard > 0) {
        timers.push(
          this.clock.setTimeout(() => {
            const e = servable();
            finish(() => (e !== undefined ? serveStale(e) : reject(new CacheLoaderTimeoutError(`${st.policy.name}:${key}`, hard))));
          }, hard),
        );
      }
    });
  }

  /** The L2 part of a read. Returns null on a miss; backfills L1 unless an invalidation arrived meanwhile. */
  private async readL2(st: PolicyState, key: string, flight: Flight<unknown>): Promise<{ value: unknown; stale: boolean } | null> {
    if (!this.l2Usable(st, key)) return null;
    let text: string | null;
    try {
      text = await this.l2!.get(`${st.policy.name}:${key}`);
    } catch (error) {
      this.l2Failed(st, key, error);
      return null;
    }
    if (this.pendingCount > 0) void this.flushPending();
    const found = text === null ? null : await this.decodeL2(st, text);
    const now = this.clock.now();
    if (found === null || now >= found.staleUntil) {
      st.l2c.misses++;
      return null;
    }
    if (now >= found.freshUntil) {
      st.l2c.misses++;
      // Read before an invalidation that has arrived since: not servable, even as stale.
      if (flight.stale) return null;
      if (st.l1 !== null) st.l1.set(key, found);
      return { value: found.value, stale: true };
    }
    st.l2c.hits++;
    if (this.listeningHits) this.events.emit('hit', { policy: st.policy.name, key, tier: 'l2' });
    if (st.l1 !== null && !flight.stale) st.l1.set(key, found);
    return { value: found.value, stale: false };
  }

  /** Decodes an L2 entry and checks its namespace and tag stamps against the current epochs. */
  private async decodeL2(st: PolicyState, text: string): Promise<CacheEntry | null> {
    const h = decodeEntry(text);
    if (h === null) return null;
    try {
      const unknown: string[] = [];
      if (st.nsEpoch === undefined) unknown.push(NS(st.policy.name));
      if (h.tags !== null) for (const [t] of h.tags) if (!this.tagEpochs.has(t)) unknown.push(t);
      if (unknown.length > 0) {
        const epochs = await this.l2!.readEpochs(unknown);
        unknown.forEach((name, i) => this.learnEpoch(st, name, epochs[i]!));
      }
    } catch (error) {
      this.l2Failed(st, undefined, error);
      return null;
    }
    if (h.nsEpoch !== st.nsEpoch || (h.tags !== null && !this.tagsCurrent(h.tags))) return null;
    let value: unknown;
    try {
      value = this.serializer.deserialize(h.payload);
    } catch (error) {
      // A damaged or foreign entry is a miss, never a failed read.
      this.l2Failed(st, undefined, error);
      return null;
    }
    if (this.freeze) deepFreeze(value);
    return { value, size: h.payload.length, freshUntil: h.freshUntil, staleUntil: h.staleUntil, nsEpoch: h.nsEpoch, tags: h.tags };
  }

  private learnEpoch(st: PolicyState, name: string, epoch: number): void {
    if (name === NS(st.policy.name)) st.nsEpoch = epoch;
    else this.tagEpochs.set(name, epoch);
  }

  private tagsCurrent(tags: readonly TagStamp[]): boolean {
    for (const [t, e] of tags) if (this.tagEpochs.get(t) !== e) return false;
    return true;
  }

  /** A single-flight load: L2, then the loader, then versioned fills. */
  private async fetch(st: PolicyState, key: string, loader: () => Promise<unknown>, tags: readonly string[], flight: Flight<unknown>, forceFill: boolean): Promise<unknown> {
    if (st.policy.useL2 && !forceFill) {
      const r = await this.readL2(st, key, flight);
      if (r !== null && !r.stale) return r.value;
      if (r !== null && r.stale && st.policy.graceMillis > 0 && st.policy.softTimeoutMillis === 0) {
        // Stale in L2 within grace: serve it and refresh in the background, as the key's next
        // flight once this one settles, so concurrent callers join one refresh and an
        // invalidation during the refresh detaches it (it then fills nothing).
        st.staleServed++;
        const refresh = (): void => {
          const next = this.flights.run(flightKey(st.policy.name, key), tags, (f) => this.loadAndFill(st, key, loader, tags, f, forceFill));
          next.promise.catch((error) => this.events.emit('error', { policy: st.policy.name, key, error }));
        };
        void flight.promise.then(refresh, refresh);
        return r.value;
      }
    }
    this.emitMiss(st, key);
    return this.loadAndFill(st, key, loader, tags, flight, forceFill);
  }

  private async loadAndFill(st: PolicyState, key: string, loader: () => Promise<unknown>, tags: readonly string[], flight: Flight<unknown>, forceFill: boolean): Promise<unknown> {
    const name = st.policy.name;
    // Versions and epochs are read before the loader runs: a later invalidation changes them, and the fill then fails.
    const [version, stamps] = await Promise.all([this.readVersion(st, key), this.stampsForFill(st, tags)]);
    st.loads++;
    let value: unknown;
    try {
      value = await loader();
    } catch (e) {
      st.loadErrors++;
      throw e;
    }
    if (value === undefined || (!st.policy.cacheAside && !forceFill)) return value;
    let payload: string;
    try {
      payload = this.serializer.serialize(value);
    } catch (error) {
      this.events.emit('error', { policy: name, key, error });
      return value;
    }
    const now = this.clock.now();
    const freshUntil = now + st.policy.ttlMillis;
    const staleUntil = freshUntil + st.policy.graceMillis;
    if (st.policy.useL2 && version !== null && stamps.ns !== undefined && this.l2Usable(st, key)) {
      try {
        const ok = await this.l2!.fill(`${name}:${key}`, version, encodeEntry(payload, freshUntil, staleUntil, stamps.ns, stamps.tags), staleUntil - now);
        if (!ok) {
          st.staleFillsPrevented++;
          return value;
        }
        st.l2c.writes++;
      } catch (error) {
        this.l2Failed(st, key, error);
      }
    }
    if (st.l1 !== null) {
      if (flight.stale) st.staleFillsPrevented++;
      else st.l1.set(key, this.l1Entry(payload, freshUntil, staleUntil, stamps.ns ?? 0, stamps.tags));
    }
    return value;
  }

  private l1Entry(payload: string, freshUntil: number, staleUntil: number, nsEpoch: number, tags: readonly TagStamp[] | null): CacheEntry {
    // L1 keeps what a round trip through the serializer gives, so L1 and L2 reads are identical.
    const value = this.serializer.deserialize(payload);
    if (this.freeze) deepFreeze(value);
    return { value, size: payload.length, freshUntil, staleUntil, nsEpoch, tags };
  }

  private async readVersion(st: PolicyState, key: string): Promise<VersionToken | null> {
    if (!st.policy.useL2 || !this.l2Usable(st, key)) return null;
    try {
      return await this.l2!.readVersion(`${st.policy.name}:${key}`);
    } catch (error) {
      this.l2Failed(st, key, error);
      return null;
    }
  }

  /** Namespace and tag epochs to stamp an entry with; from Redis when it answers, else local knowledge. */
  private async stampsForFill(st: PolicyState, tags: readonly string[]): Promise<{ ns: number | undefined; tags: readonly TagStamp[] | null }> {
    if (st.policy.useL2) {
      try {
        const names = [NS(st.policy.name), ...tags];
        const epochs = await this.l2!.readEpochs(names);
        const ns = epochs[0]!;
        st.nsEpoch = ns;
        const stamps = tags.map((t, i): TagStamp => [t, epochs[i + 1]!]);
        // Learn only tags not known yet: a newer epoch from the bus must not be overwritten by this read.
        for (const [t, e] of stamps) if (!this.tagEpochs.has(t)) this.tagEpochs.set(t, e);
        return { ns, tags: stamps.length === 0 ? null : stamps };
      } catch (error) {
        this.l2Failed(st, undefined, error);
      }
    }
    if (tags.length === 0) return { ns: st.policy.useL2 ? undefined : 0, tags: null };
    const stamps = tags.map((t): TagStamp => {
      let e = this.tagEpochs.get(t);
      if (e === undefined) this.tagEpochs.set(t, (e = --this.localEpoch));
      return [t, e];
    });
    return { ns: st.policy.useL2 ? undefined : 0, tags: stamps };
  }

  /** Values of several keys (L1, then one MGET per Redis server); `undefined` where missing. With `loader`, missing keys are loaded. */
  getMany<T = unknown>(policy: string, keys: readonly string[], loader?: (key: string) => Promise<T>): Promise<(T | undefined)[]> {
    return this.getManyIn(this.state(policy), keys, loader) as Promise<(T | undefined)[]>;
  }

  /** @internal */
  async getManyIn(st: PolicyState, keys: readonly string[], loader?: (key: string) => Promise<unknown>): Promise<unknown[]> {
    const out: unknown[] = keys.map((k) => this.peekIn(st, k));
    let missing = keys.map((_, i) => i).filter((i) => out[i] === undefined);
    if (st.l1 !== null) st.l1c.misses += missing.length;
    const usable = missing.filter((i) => this.l2Usable(st, keys[i]!));
    if (st.policy.useL2 && usable.length > 0) {
      const seq = st.invalidationSeq;
      try {
        const texts = await this.l2!.mget(usable.map((i) => `${st.policy.name}:${keys[i]}`));
        const now = this.clock.now();
        for (let j = 0; j < usable.length; j++) {
          const text = texts[j];
          const i = usable[j]!;
          const e = text == null ? null : await this.decodeL2(st, text);
          if (e === null || now >= e.freshUntil) {
            st.l2c.misses++;
            continue;
          }
          st.l2c.hits++;
          out[i] = e.value;
          if (st.l1 !== null && seq === st.invalidationSeq) st.l1.set(keys[i]!, e);
        }
      } catch (error) {
        this.l2Failed(st, undefined, error);
      }
      missing = missing.filter((i) => out[i] === undefined);
    }
    if (loader !== undefined) {
      await Promise.all(missing.map(async (i) => (out[i] = await this.getOrLoadIn(st, keys[i]!, () => loader(keys[i]!), [], false))));
    }
    return out;
  }

  /**
   * Loads `keys` in parallel (at most `concurrency` loader calls at once) and fills the tiers,
   * whatever `cacheAside` says. Keys already cached are skipped. Never throws; failures are listed.
   */
  async warmUp<T>(policy: string, keys: readonly string[], loader: (key: string) => Promise<T>, options: { concurrency?: number } = {}): Promise<WarmUpResult> {
    const st = this.state(policy);
    const concurrency = options.concurrency ?? 8;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new ConfigError('warmUp.concurrency', `must be an integer ≥ 1, got ${concurrency}`);
    let loaded = 0;
    let alreadyCached = 0;
    const failed: { key: string; error: unknown }[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length) {
        const key = keys[next++]!;
        try {
          if ((await this.getIn(st, key)) !== undefined) {
            alreadyCached++;
            continue;
          }
          await this.getOrLoadIn(st, key, () => loader(key), [], true);
          loaded++;
        } catch (error) {
          failed.push({ key, error });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, worker));
    return Object.freeze({ loaded, alreadyCached, failed: Object.freeze(failed) });
  }

  // ---- writes ---------------------------------------------------------------------------------

  /**
   * Writes a value: first to the source of truth (`options.save`), then, with `writeThrough`, to
   * L2 and L1 (or, without it, invalidates the key); other instances are told on the bus. If L2
   * cannot take the value, the key is invalidated there (or queued until Redis returns) so L2 never
   * keeps the old value. Resolves once the source of truth, L2 and the bus have been written.
   */
  set<T>(policy: string, key: string, value: T, options: SetOptions<T> = {}): Promise<void> {
    return this.setIn(this.state(policy), key, value, options);
  }

  /** @internal */
  async setIn<T>(st: PolicyState, key: string, value: T, options: SetOptions<T>): Promise<void> {
    const name = st.policy.name;
    let payload: string | undefined;
    try {
      payload = this.serializer.serialize(value);
    } catch (error) {
      // Without a source of truth to write, refusing is the answer; with one, save and invalidate.
      if (options.save === undefined || !(error instanceof CacheValueTooLargeError)) throw error;
      this.events.emit('error', { policy: name, key, error });
    }
    if (payload === undefined || !st.policy.writeThrough) {
      if (options.save !== undefined) await options.save(value);
      await this.invalidateIn(st, [key]);
      return;
    }
    const tags = options.tags ?? [];
    // An invalidation of this key (local, from the bus, by tag or namespace) from the start of the
    // save until the L1 fill may stand for a newer write elsewhere: then this value goes neither to
    // L1 nor stays in L2 (the key is invalidated instead).
    const w: WriteInFlight = { key: flightKey(name, key), tags, overtaken: false };
    this.writing.add(w);
    try {
      if (options.save !== undefined) await options.save(value);
      // Loads that started before the save may hold the old value: they must not fill.
      this.noteInvalidation(st, key, w);
      await this.writeThrough(st, key, payload, tags, w);
    } finally {
      this.writing.delete(w);
    }
    await this.publish({ type: 'keys', policy: name, keys: [key] }, () => this.addPendingKeys(st, [key]));
    this.events.emit('write', { policy: name, key });
  }

  private async writeThrough(st: PolicyState, key: string, payload: string, tags: readonly string[], w: WriteInFlight): Promise<void> {
    const name = st.policy.name;
    const stamps = await this.stampsForFill(st, tags);
    const now = this.clock.now();
    const freshUntil = now + st.policy.ttlMillis;
    const staleUntil = freshUntil + st.policy.graceMillis;
    let l2Ok = !st.policy.useL2;
    if (st.policy.useL2 && stamps.ns !== undefined && this.l2Usable(st, key)) {
      try {
        await this.l2!.write(`${name}:${key}`, encodeEntry(payload, freshUntil, staleUntil, stamps.ns, stamps.tags), staleUntil - now);
        st.l2c.writes++;
        l2Ok = true;
      } catch (error) {
        this.l2Failed(st, key, error);
      }
    }
    if (!l2Ok || w.overtaken) await this.invalidateL2(st, [key]);
    if (st.l1 !== null && !w.overtaken) {
      st.l1.set(key, this.l1Entry(payload, freshUntil, staleUntil, stamps.ns ?? 0, stamps.tags));
      st.l1c.writes++;
    }
  }

  /** Removes keys from every tier and every instance. Same as {@link TieredCache.invalidate}. */
  delete(policy: string, ...keys: string[]): Promise<void> {
    return this.invalidateIn(this.state(policy), keys);
  }

  /** Invalidates keys in L1, L2 (version bump, so racing fills fail) and on the other instances. */
  invalidate(policy: string, keys: readonly string[]): Promise<void> {
    return this.invalidateIn(this.state(policy), keys);
  }

  /** @internal */
  async invalidateIn(st: PolicyState, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    for (const k of keys) {
      this.noteInvalidation(st, k);
      st.l1?.delete(k);
    }
    st.l1c.invalidations += keys.length;
    if (st.policy.useL2) await this.invalidateL2(st, keys);
    await this.publish({ type: 'keys', policy: st.policy.name, keys }, () => this.addPendingKeys(st, keys));
    this.events.emit('invalidate', { policy: st.policy.name, keys, source: 'local' });
  }

  private async invalidateL2(st: PolicyState, keys: readonly string[]): Promise<void> {
    try {
      if (!this.l2Usable(st, undefined)) throw new Error('policy bypasses L2 until its namespace is bumped');
      await this.l2!.invalidate(keys.map((k) => `${st.policy.name}:${k}`));
      st.l2c.invalidations += keys.length;
    } catch (error) {
      this.l2Failed(st, undefined, error);
      this.addPendingKeys(st, keys);
    }
  }

  /** Invalidates every entry carrying one of `tags`, in every policy and on every instance. */
  async invalidateTags(tags: readonly string[]): Promise<void> {
    if (tags.length === 0) return;
    const bumped: [string, number | null][] = [];
    const usesL2 = [...this.states.values()].some((s) => s.policy.useL2);
    // Locally first and synchronously: this instance stops serving the tagged entries at once,
    // and loads already running will not fill.
    for (const tag of tags) this.tagEpochs.set(tag, --this.localEpoch);
    const set = new Set(tags);
    this.noteTagInvalidation(set);
    for (const tag of tags) {
      let epoch: number | undefined;
      if (usesL2) {
        try {
          epoch = await this.l2!.bumpEpoch(tag);
        } catch (error) {
          this.l2Failed(undefined, undefined, error);
          this.addPendingTags([tag]);
        }
      }
      // Without Redis, move the local epoch anyway (to a never-used negative value) so L1 entries
      // with the old stamp stop being served; receivers do the same for a `null` epoch.
      this.tagEpochs.set(tag, epoch ?? --this.localEpoch);
      bumped.push([tag, epoch ?? null]);
    }
    this.noteTagInvalidation(set);
    for (const st of this.states.values()) st.invalidationSeq++;
    await this.publish({ type: 'tags', tags: bumped }, () => this.addPendingTags(tags));
    this.events.emit('invalidate', { policy: '*', tags, source: 'local' });
  }

  /** Invalidates every entry of a policy (its namespace), on every instance, without scanning Redis. */
  invalidateNamespace(policy: string): Promise<void> {
    return this.invalidateNamespaceIn(this.state(policy));
  }

  private async invalidateNamespaceIn(st: PolicyState): Promise<void> {
    const name = st.policy.name;
    let epoch: number | null = null;
    if (st.policy.useL2) {
      try {
        epoch = await this.l2!.bumpEpoch(NS(name));
        st.nsEpoch = epoch;
        st.l2Bypass = false;
      } catch (error) {
        this.l2Failed(st, undefined, error);
        if (!this.pendingNamespaces.has(name)) (this.pendingNamespaces.add(name), this.pendingCount++);
        st.nsEpoch = undefined;
        st.l2Bypass = true;
      }
    }
    this.clearPolicyLocally(st);
    await this.publish({ type: 'namespace', policy: name, epoch }, () => {
      if (!this.pendingNamespaces.has(name)) (this.pendingNamespaces.add(name), this.pendingCount++);
    });
    this.events.emit('invalidate', { policy: name, namespace: true, source: 'local' });
  }

  private clearPolicyLocally(st: PolicyState): void {
    st.invalidationSeq++;
    st.l1?.clear();
    const prefix = `${st.policy.name}\u0000`;
    this.flights.markWhere((f) => f.key.startsWith(prefix));
    for (const w of this.writing) if (w.key.startsWith(prefix)) w.overtaken = true;
  }

  private noteInvalidation(st: PolicyState, key: string, self?: WriteInFlight): void {
    st.invalidationSeq++;
    const fk = flightKey(st.policy.name, key);
    this.flights.markKey(fk);
    if (this.writing.size > 0) for (const w of this.writing) if (w.key === fk && w !== self) w.overtaken = true;
  }

  /** Marks loads and writes in progress whose tags include one of `tags`. */
  private noteTagInvalidation(tags: ReadonlySet<string>): void {
    const match = (f: { readonly tags: readonly string[] }): boolean => f.tags.some((t) => tags.has(t));
    this.flights.markWhere(match);
    for (const w of this.writing) if (match(w)) w.overtaken = true;
  }

  // ---- bus and Redis outages -------------------------------------------------------------------

  private async publish(message: BusMessage, onFailure: () => void): Promise<void> {
    if (this.bus === undefined) return;
    try {
      await this.bus.publish(message);
      this.busPublished++;
    } catch (error) {
      this.events.emit('error', { error });
      onFailure();
    }
  }

  private applyBusMessage(m: BusMessage): void {
    const receivedAt = this.clock.monotonicNow();
    this.busReceived++;
    const handlers: { [K in BusMessage['type']]: (m: Extract<BusMessage, { type: K }>) => void } = {
      keys: (msg) => {
        const st = this.states.get(msg.policy);
        if (st === undefined) return;
        for (const k of msg.keys) {
          this.noteInvalidation(st, k);
          st.l1?.delete(k);
        }
        this.events.emit('invalidate', { policy: msg.policy, keys: msg.keys, source: 'bus' });
      },
      tags: (msg) => {
        const tags = new Set<string>();
        for (const [t, e] of msg.tags) {
          tags.add(t);
          // `null`: the sender could not reach Redis; move ours to a value no entry carries.
          if (e !== null) this.tagEpochs.set(t, e);
          else if (this.tagEpochs.has(t)) this.tagEpochs.set(t, --this.localEpoch);
        }
        this.noteTagInvalidation(tags);
        for (const st of this.states.values()) st.invalidationSeq++;
        this.events.emit('invalidate', { policy: '*', tags: [...tags], source: 'bus' });
      },
      namespace: (msg) => {
        const st = this.states.get(msg.policy);
        if (st === undefined) return;
        st.nsEpoch = msg.epoch ?? undefined;
        this.clearPolicyLocally(st);
        this.events.emit('invalidate', { policy: msg.policy, namespace: true, source: 'bus' });
      },
    };
    (handlers[m.type] as (m: BusMessage) => void)(m);
    this.events.emit('bus', { message: m, receivedAt });
  }

  /** Pub/sub may have dropped messages while disconnected: forget everything local that they could have invalidated. */
  private onBusReconnect(): void {
    this.busReconnects++;
    this.tagEpochs.clear();
    for (const st of this.states.values()) {
      st.nsEpoch = undefined;
      this.clearPolicyLocally(st);
    }
    void this.flushPending();
  }

  private l2Usable(st: PolicyState, key: string | undefined): boolean {
    if (!st.policy.useL2 || st.l2Bypass) return false;
    if (key !== undefined && this.pendingCount > 0 && this.pendingKeys.get(st.policy.name)?.has(key) === true) return false;
    return true;
  }

  private l2Failed(st: PolicyState | undefined, key: string | undefined, error: unknown): void {
    if (st !== undefined) st.l2c.errors++;
    this.events.emit('error', { ...(st ? { policy: st.policy.name } : {}), ...(key !== undefined ? { key } : {}), error });
  }

  private addPendingKeys(st: PolicyState, keys: readonly string[]): void {
    if (!st.policy.useL2 && this.bus === undefined) return;
    let set = this.pendingKeys.get(st.policy.name);
    if (set === undefined) this.pendingKeys.set(st.policy.name, (set = new Set()));
    for (const k of keys) {
      if (this.pendingCount >= this.maxPending) {
        // Too many to remember one by one: distrust the whole policy in L2 until its namespace is bumped.
        st.l2Bypass = true;
        if (!this.pendingNamespaces.has(st.policy.name)) (this.pendingNamespaces.add(st.policy.name), this.pendingCount++);
        return;
      }
      if (!set.has(k)) {
        set.add(k);
        this.pendingCount++;
      }
    }
  }

  /**
   * Remembers tag invalidations Redis or the bus did not take (each distinct tag counts once). Beyond
   * `maxPendingInvalidations`, every policy that uses L2 is distrusted there until its namespace is
   * bumped, which invalidates whatever the forgotten tags covered.
   */
  private addPendingTags(tags: readonly string[]): void {
    for (const t of tags) {
      if (this.pendingTags.has(t)) continue;
      if (this.pendingCount >= this.maxPending) {
        for (const st of this.states.values()) {
          if (!st.policy.useL2 && this.bus === undefined) continue;
          st.l2Bypass = st.policy.useL2;
          if (!this.pendingNamespaces.has(st.policy.name)) (this.pendingNamespaces.add(st.policy.name), this.pendingCount++);
        }
        return;
      }
      this.pendingTags.add(t);
      this.pendingCount++;
    }
  }

  /** Replays invalidations Redis or the bus did not take; called when either comes back. */
  flushPending(): Promise<void> {
    if (this.flushing !== null || this.pendingCount === 0 || this.closed) return this.flushing ?? Promise.resolve();
    this.flushing = (async () => {
      try {
        for (const name of [...this.pendingNamespaces]) {
          const st = this.states.get(name)!;
          this.pendingNamespaces.delete(name);
          this.pendingCount--;
          this.pendingKeys.get(name)?.forEach(() => this.pendingCount--);
          this.pendingKeys.delete(name);
          await this.invalidateNamespaceIn(st);
        }
        for (const tag of [...this.pendingTags]) {
          this.pendingTags.delete(tag);
          this.pendingCount--;
          await this.invalidateTags([tag]);
        }
        for (const [name, keys] of [...this.pendingKeys]) {
          const st = this.states.get(name)!;
          const list = [...keys];
          this.pendingKeys.delete(name);
          this.pendingCount -= list.length;
          await this.invalidateIn(st, list);
        }
      } finally {
        this.flushing = null;
      }
    })();
    return this.flushing;
  }

  // ---- insight ------------------------------------------------------------------------------

  /** Per-policy, per-tier statistics. */
  stats(): CacheStats {
    const policies: Record<string, PolicyStats> = {};
    let hits = 0;
    let misses = 0;
    for (const [name, st] of this.states) {
      const h = st.l1c.hits + st.l2c.hits;
      const reads = st.policy.useL1 ? st.l1c.hits + st.l1c.misses : st.l2c.hits + st.l2c.misses;
      hits += h;
      misses += reads - h;
      policies[name] = Object.freeze({
        l1: tierStats(st.l1c, st.l1 ? { size: st.l1.size, bytes: st.l1.bytes, evictions: st.l1.evictions } : { size: 0, bytes: 0, evictions: 0 }),
        l2: tierStats(st.l2c),
        loads: st.loads,
        loadErrors: st.loadErrors,
        staleServed: st.staleServed,
        staleFillsPrevented: st.staleFillsPrevented,
        hitRate: rate(h, reads - h),
      });
    }
    return Object.freeze({
      policies: Object.freeze(policies),
      totalHits: hits,
      totalMisses: misses,
      hitRate: rate(hits, misses),
      bus: Object.freeze({ received: this.busReceived, published: this.busPublished, reconnects: this.busReconnects }),
      pendingInvalidations: this.pendingCount,
    });
  }

  /** The hottest keys (estimated accesses per minute), bounded memory. */
  hotKeys(limit = 10): HotKey[] {
    return this.hot === null ? [] : this.hot.top(this.clock.now(), limit);
  }

  /**
   * Suggestions from access statistics: hot keys that should be in L1 or live longer, policies whose
   * L1 entries are mostly never read (shorter TTL), L1 too small for its working set.
   * @param hotPerMinute accesses per minute above which a key is hot (the original design used 10).
   */
  suggestions(hotPerMinute = 10): CacheSuggestion[] {
    const out: CacheSuggestion[] = [];
    const now = this.clock.now();
    for (const h of this.hotKeys(64)) {
      if (h.perMinute < hotPerMinute) continue;
      const st = this.states.get(h.policy);
      if (st === undefined) continue;
      if (!st.policy.useL1) {
        out.push({ kind: 'hot-key-add-l1', policy: h.policy, key: h.key, message: `Hot key '${h.key}' (${h.perMinute.toFixed(0)}/min) in policy '${h.policy}' is served from Redis on every read; add 'l1' to its levels` });
      } else if (st.policy.ttlMillis < 60_000) {
        out.push({ kind: 'hot-key-longer-ttl', policy: h.policy, key: h.key, message: `Hot key '${h.key}' (${h.perMinute.toFixed(0)}/min) in policy '${h.policy}' expires every ${st.policy.ttlMillis} ms; a longer ttlMillis saves loads` });
      }
    }
    for (const [name, st] of this.states) {
      if (st.l1 !== null && st.l1.evictions > st.policy.maxEntries && rate(st.l1c.hits, st.l1c.misses) < 0.5) {
        out.push({ kind: 'l1-too-small', policy: name, message: `Policy '${name}' evicted ${st.l1.evictions} L1 entries with an L1 hit rate of ${(rate(st.l1c.hits, st.l1c.misses) * 100).toFixed(0)}%; raise maxEntries or maxBytes` });
      }
      if (st.l1 !== null && st.l1.size >= 20) {
        // Cold: entries past half their lifetime whose key is not among the tracked hot keys.
        const hot = new Set(this.hotKeys(64).filter((h) => h.policy === name).map((h) => h.key));
        let sampled = 0;
        let cold = 0;
        for (const [k, e] of st.l1.entries()) {
          if (++sampled > 1000) break;
          if (now - (e.freshUntil - st.policy.ttlMillis) > st.policy.ttlMillis / 2 && !hot.has(k)) cold++;
        }
        if (cold / Math.min(sampled, 1000) > 0.8 && rate(st.l1c.hits, st.l1c.misses) < 0.2) {
          out.push({ kind: 'cold-keys-shorter-ttl', policy: name, message: `Policy '${name}': ${cold} of ${Math.min(sampled, 1000)} sampled L1 entries are cold and the L1 hit rate is low; consider a shorter ttlMillis or cacheAside: false` });
        }
      }
    }
    return out;
  }

  private emitMiss(st: PolicyState, key: string): void {
    if (this.events.listenerCount('miss') > 0) this.events.emit('miss', { policy: st.policy.name, key });
  }

  /**
   * Releases everything the cache holds: stops listening to the bus and to L2 recoveries, waits for
   * a replay of pending invalidations that is running, closes the bus and the L2 tier, then ends the
   * clients given as `closeClients` (other clients passed in are left open). Reads and writes after
   * `close()` still work on L1 and the loader. Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      for (const u of this.unsubscribers) u();
      this.unsubscribers.length = 0;
      await this.flushing?.catch(() => {});
      await this.bus?.close();
      await this.l2?.close();
      await closeRedisClients(this.ownedClients);
    })();
    return this.closing;
  }
}

/** A {@link TieredCache} bound to one policy (no policy lookup per call). */
export class PolicyCache<T = unknown> {
  /** @internal */
  constructor(
    private readonly cache: TieredCache,
    private readonly st: PolicyState,
  ) {}

  get name(): string {
    return this.st.policy.name;
  }
  peek(key: string): T | undefined {
    return this.cache.peekIn(this.st, key) as T | undefined;
  }
  get(key: string): Promise<T | undefined> {
    return this.cache.getIn(this.st, key) as Promise<T | undefined>;
  }
  getOrLoad(key: string, loader: () => Promise<T>, options?: LoadOptions): Promise<T> {
    return this.cache.getOrLoadIn(this.st, key, loader, options?.tags ?? [], false) as Promise<T>;
  }
  getMany(keys: readonly string[], loader?: (key: string) => Promise<T>): Promise<(T | undefined)[]> {
    return this.cache.getManyIn(this.st, keys, loader) as Promise<(T | undefined)[]>;
  }
  set(key: string, value: T, options?: SetOptions<T>): Promise<void> {
    return this.cache.setIn(this.st, key, value, options ?? {});
  }
  invalidate(keys: readonly string[]): Promise<void> {
    return this.cache.invalidateIn(this.st, keys);
  }
}
