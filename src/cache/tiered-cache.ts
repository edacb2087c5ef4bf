/**
 * `TieredCache`: the facade users call. It resolves the options and wires the parts together; each
 * part is one concept in its own file:
 *
 * - policy state (`cache-policy-state.ts`): the policies and what each keeps at run time;
 * - coherence (`cache-coherence.ts`): tag epochs, loads and writes in flight, fill stamps;
 * - read path (`cache-read-path.ts`, `cache-l2-reads.ts`, `cache-fill.ts`, `cache-load-deadline.ts`);
 * - write path (`cache-write-path.ts`): write-through, invalidation by key, tag and namespace;
 * - pending invalidations (`cache-pending-invalidations.ts`): what Redis or the bus missed;
 * - bus link (`cache-bus-link.ts`) and advisor (`cache-advisor.ts`: stats, hot keys, suggestions).
 */
import type { EventEmitter } from 'node:events';
import { CacheAdvisor, type CacheSuggestion } from './cache-advisor';
import { CacheBusLink } from './cache-bus-link';
import { CallBudgets } from './cache-call-budget';
import { CacheCoherence } from './cache-coherence';
import { CacheEventHub, type CacheEvents } from './cache-events';
import { cacheKey, cacheKeys, type CacheKey } from './cache-key';
import { CacheFill } from './cache-fill';
import { CacheL2Reads } from './cache-l2-reads';
import { PendingInvalidations } from './cache-pending-invalidations';
import type { CachePolicy } from './cache-policy';
import { PolicyRegistry } from './cache-policy-state';
import { CacheReadPath } from './cache-read-path';
import type { CacheStats } from './cache-stats';
import { CacheValueCodec } from './cache-value-codec';
import { CacheWritePath } from './cache-write-path';
import type { HotKey } from './hot-key-tracker';
import type { InvalidationBus } from './invalidation-bus';
import type { L2Tier } from './l2-tier';
import { PolicyCache } from './policy-cache';
import { observeCacheCall, trackCache } from './cache-telemetry';
import { closeRedisClients, type ClosableRedis } from './redis-client';
import { loadTags, resolveTieredCacheOptions, type LoadOptions, type SetOptions, type TieredCacheOptions, type WarmUpResult } from './tiered-cache-options';

/**
 * The multi-level cache: L1 in process, L2 in Redis, coherent across instances through the
 * invalidation bus, safe against stampedes (single-flight) and stale fills (versioned fills).
 * Redis being down never fails a read: reads fall through to L1 and the loader.
 */
export class TieredCache {
  /** Events; see {@link CacheEvents}. */
  readonly events: EventEmitter<CacheEvents>;
  private readonly registry: PolicyRegistry;
  private readonly l2: L2Tier | undefined;
  private readonly bus: InvalidationBus | undefined;
  private readonly ownedClients: readonly ClosableRedis[];
  private readonly pending: PendingInvalidations;
  private readonly reads: CacheReadPath;
  private readonly writes: CacheWritePath;
  private readonly advisor: CacheAdvisor;
  private readonly unsubscribers: (() => void)[];
  private closing: Promise<void> | null = null;

  constructor(options: TieredCacheOptions) {
    const o = resolveTieredCacheOptions(options);
    this.registry = new PolicyRegistry(o.policies);
    this.l2 = o.l2;
    this.bus = o.bus;
    this.ownedClients = o.closeClients;
    const hub = new CacheEventHub();
    this.events = hub.emitter;
    const codec = new CacheValueCodec(o.serializer, o.freezeValues);
    const coherence = new CacheCoherence(this.registry, o.l2, hub);
    const budgets = new CallBudgets(o.clock, o.callTimeoutMillis);
    // Pending invalidations are replayed through the write path, which queues what fails again.
    this.pending = new PendingInvalidations(
      this.registry,
      o.maxPendingInvalidations,
      o.bus !== undefined,
      {
        namespace: (st) => this.writes.invalidateNamespace(st),
        tags: (tags) => this.writes.invalidateTags(tags),
        keys: (st, keys) => this.writes.invalidateKeys(st, keys),
        write: (st, key, write) => this.writes.replayWrite(st, key, write),
      },
      o.clock,
    );
    const busLink = new CacheBusLink(o.bus, this.registry, coherence, this.pending, hub, o.clock, o.busSilenceMillis);
    const l2Reads = new CacheL2Reads(o.l2, coherence, this.pending, codec, hub, o.clock);
    const fill = new CacheFill(o.l2, coherence, this.pending, codec, hub, o.clock);
    this.reads = new CacheReadPath(o.clock, coherence, this.pending, l2Reads, fill, hub, o.hotKeys, budgets);
    this.writes = new CacheWritePath(this.registry, o.l2, coherence, this.pending, codec, busLink, hub, o.clock, budgets);
    this.advisor = new CacheAdvisor(this.registry, o.hotKeys, busLink, this.pending, o.clock);
    // Replay never waits for a caller: it starts as soon as Redis or the bus is known to be back.
    this.unsubscribers = busLink.listen(() => void this.pending.recovered());
    if (o.l2 !== undefined) this.unsubscribers.push(o.l2.onRecover(() => void this.pending.recovered()));
    this.unsubscribers.push(trackCache(this, () => o.l2?.health() ?? {}));
  }

  /** Names of the configured policies. */
  get policyNames(): readonly string[] {
    return this.registry.names;
  }

  /** The resolved policy. */
  policy(name: string): CachePolicy {
    return this.registry.get(name).policy;
  }

  /** A handle bound to one policy, saving the policy lookup on every call. */
  forPolicy<T = unknown>(name: string): PolicyCache<T> {
    return new PolicyCache<T>(this.reads, this.writes, this.registry.get(name));
  }

  // ---- reads ----------------------------------------------------------------------------------

  /** Synchronous L1 lookup: the fresh value or `undefined`. The fastest path; never touches Redis. */
  peek<T = unknown>(policy: string, key: CacheKey): T | undefined {
    return this.reads.peek(this.registry.get(policy), typeof key === 'string' ? key : cacheKey(key)) as T | undefined;
  }

  /** L1, then L2 (backfilling L1); `undefined` when neither holds a fresh value. */
  get<T = unknown>(policy: string, key: CacheKey): Promise<T | undefined> {
    const st = this.registry.get(policy);
    const k = typeof key === 'string' ? key : cacheKey(key);
    return observeCacheCall(this, 'get', policy, k, () => this.reads.get(st, k)) as Promise<T | undefined>;
  }

  /**
   * L1 → L2 → `loader`, filling the tiers above. One loader call per key per process; a load
   * that raced an invalidation returns its value but does not fill. Loader errors reach the caller
   * unchanged (unless a stale value within grace can be served).
   */
  getOrLoad<T>(policy: string, key: CacheKey, loader: () => Promise<T>, options?: LoadOptions): Promise<T> {
    const st = this.registry.get(policy);
    const k = typeof key === 'string' ? key : cacheKey(key);
    return observeCacheCall(this, 'getOrLoad', policy, k, () => this.reads.getOrLoad(st, k, loader, loadTags(options), false)) as Promise<T>;
  }

  /** Values of several keys (L1, then one MGET per Redis server); `undefined` where missing. With `loader`, missing keys are loaded. */
  getMany<T = unknown>(policy: string, keys: readonly CacheKey[], loader?: (key: string) => Promise<T>): Promise<(T | undefined)[]> {
    return this.reads.getMany(this.registry.get(policy), cacheKeys(keys), loader) as Promise<(T | undefined)[]>;
  }

  /**
   * Loads `keys` in parallel (at most `concurrency` loader calls at once) and fills the tiers,
   * whatever `cacheAside` says. Keys already cached are skipped. Never throws; failures are listed.
   */
  warmUp<T>(policy: string, keys: readonly CacheKey[], loader: (key: string) => Promise<T>, options: { concurrency?: number } = {}): Promise<WarmUpResult> {
    return this.reads.warmUp(this.registry.get(policy), cacheKeys(keys), loader, options);
  }

  // ---- writes ---------------------------------------------------------------------------------

  /**
   * Writes a value: first to the source of truth (`options.save`), then, with `writeThrough`, to
   * L2 and L1 (or, without it, invalidates the key); other instances are told on the bus. If L2
   * cannot take the value, the key is invalidated there (or queued until Redis returns) so L2 never
   * keeps the old value. Resolves once the source of truth, L2 and the bus have been written.
   */
  set<T>(policy: string, key: CacheKey, value: T, options: SetOptions<T> = {}): Promise<void> {
    const st = this.registry.get(policy);
    const k = cacheKey(key);
    return observeCacheCall(this, 'set', policy, k, () => this.writes.set(st, k, value, options));
  }

  /** Removes keys from every tier and every instance. Same as {@link TieredCache.invalidate}. */
  delete(policy: string, ...keys: CacheKey[]): Promise<void> {
    return this.writes.invalidateKeys(this.registry.get(policy), cacheKeys(keys));
  }

  /** Invalidates keys in L1, L2 (version bump, so racing fills fail) and on the other instances. */
  invalidate(policy: string, keys: readonly CacheKey[]): Promise<void> {
    return this.writes.invalidateKeys(this.registry.get(policy), cacheKeys(keys));
  }

  /** Invalidates every entry carrying one of `tags`, in every policy and on every instance. */
  invalidateTags(tags: readonly string[]): Promise<void> {
    return this.writes.invalidateTags(tags);
  }

  /** Invalidates every entry of a policy (its namespace), on every instance, without scanning Redis. */
  invalidateNamespace(policy: string): Promise<void> {
    return this.writes.invalidateNamespace(this.registry.get(policy));
  }

  /** Replays invalidations Redis or the bus did not take; runs by itself when either comes back. */
  flushPending(): Promise<void> {
    return this.pending.flush();
  }

  // ---- insight ------------------------------------------------------------------------------

  /** Per-policy, per-tier statistics. */
  stats(): CacheStats {
    return this.advisor.stats();
  }

  /** The hottest keys (estimated accesses per minute), bounded memory. */
  hotKeys(limit = 10): HotKey[] {
    return this.advisor.hotKeys(limit);
  }

  /**
   * Suggestions from access statistics: hot keys that should be in L1 or live longer, policies whose
   * L1 entries are mostly never read (shorter TTL), L1 too small for its working set.
   * @param hotPerMinute accesses per minute above which a key is hot (the original design used 10).
   */
  suggestions(hotPerMinute = 10): CacheSuggestion[] {
    return this.advisor.suggestions(hotPerMinute);
  }

  /**
   * Releases everything the cache holds: stops listening to the bus and to L2 recoveries, waits for
   * a replay of pending invalidations that is running, closes the bus and the L2 tier, then ends the
   * clients given as `closeClients` (other clients passed in are left open). Reads and writes after
   * `close()` still work on L1 and the loader. Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const u of this.unsubscribers) u();
      this.unsubscribers.length = 0;
      await this.pending.close();
      await this.bus?.close();
      await this.l2?.close();
      await closeRedisClients(this.ownedClients);
    })();
    return this.closing;
  }
}
