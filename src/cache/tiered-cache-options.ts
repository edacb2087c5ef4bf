/** Options of `TieredCache` and of its calls, their defaults, and their validation. */
import { systemClock, type Clock } from '../kernel/clock';
import { ConfigError } from '../kernel/errors';
import { resolvePolicies, type CachePolicy, type CachePolicyOptions } from './cache-policy';
import { HotKeyTracker, type HotKeyTrackerOptions } from './hot-key-tracker';
import type { InvalidationBus } from './invalidation-bus';
import type { L2Tier } from './l2-tier';
import type { ClosableRedis } from './redis-client';
import { createSerializer, type CacheSerializer } from './serializer';

/** Options of `TieredCache`. */
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
   * `close()` ends them with `closeRedisClient` once the bus and the L2 tier are closed,
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

/** Result of `TieredCache.warmUp`. */
export interface WarmUpResult {
  readonly loaded: number;
  readonly alreadyCached: number;
  readonly failed: readonly { readonly key: string; readonly error: unknown }[];
}

/**
 * {@link TieredCacheOptions} validated, with defaults applied; nothing of the caller's object is kept.
 * @internal
 */
export interface ResolvedTieredCacheOptions {
  readonly policies: readonly CachePolicy[];
  readonly l2: L2Tier | undefined;
  readonly bus: InvalidationBus | undefined;
  readonly closeClients: readonly ClosableRedis[];
  readonly serializer: CacheSerializer;
  readonly clock: Clock;
  readonly maxPendingInvalidations: number;
  readonly freezeValues: boolean;
  readonly hotKeys: HotKeyTracker | null;
}

/** @internal */
export function resolveTieredCacheOptions(options: TieredCacheOptions): ResolvedTieredCacheOptions {
  if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'must be an object');
  const policies = [...resolvePolicies(options.policies).values()];
  for (const p of policies) {
    if (p.useL2 && options.l2 === undefined) throw new ConfigError('l2', `policy \`${p.name}\` uses level 'l2' but no L2 tier was given`);
  }
  const closeClients = [...(options.closeClients ?? [])];
  const maxValueBytes = options.maxValueBytes ?? TIERED_CACHE_DEFAULTS.maxValueBytes;
  if (!Number.isSafeInteger(maxValueBytes) || maxValueBytes < 1) throw new ConfigError('maxValueBytes', `must be an integer ≥ 1, got ${maxValueBytes}`);
  const serializer = options.serializer ?? createSerializer({ maxValueBytes });
  const maxPendingInvalidations = options.maxPendingInvalidations ?? TIERED_CACHE_DEFAULTS.maxPendingInvalidations;
  if (!Number.isSafeInteger(maxPendingInvalidations) || maxPendingInvalidations < 0) {
    throw new ConfigError('maxPendingInvalidations', `must be an integer ≥ 0, got ${maxPendingInvalidations}`);
  }
  return {
    policies,
    l2: options.l2,
    bus: options.bus,
    closeClients,
    serializer,
    clock: options.clock ?? systemClock,
    maxPendingInvalidations,
    freezeValues: options.freezeValues ?? TIERED_CACHE_DEFAULTS.freezeValues,
    hotKeys: options.hotKeys === false ? null : new HotKeyTracker(options.hotKeys ?? {}),
  };
}
