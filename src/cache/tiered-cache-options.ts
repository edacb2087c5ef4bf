/** Options of `TieredCache` and of its calls, their defaults, and their validation. */
import { systemClock, type Clock } from '../kernel/clock';
import { ConfigError } from '../kernel/errors';
import { describeValue, requireBoolean, requireInteger, requireKnownKeys, requireObject } from '../kernel/validate';
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
  /**
   * The longest one cache call (`get`, `getOrLoad`, `set`, `invalidate`, …) waits on Redis, L2 and
   * bus together, in milliseconds. Past it the call carries on as if Redis were down: reads fall
   * through to the loader, writes queue their invalidation. The loader's own time is not counted.
   * @default 500
   */
  callTimeoutMillis?: number;
  /**
   * With a bus: how long L1 entries are still served after the bus was last confirmed live
   * (subscribed, heartbeat answered), in milliseconds. Past it, L1 is cleared and bypassed until
   * the bus is back, when it is cleared again. Bounds how long this instance can serve a value
   * older than another instance's acknowledged write while the bus cannot deliver. Must exceed the
   * bus's `heartbeatIntervalMillis`.
   * @default 3_000
   */
  busSilenceMillis?: number;
}

/** Defaults of {@link TieredCacheOptions}. */
export const TIERED_CACHE_DEFAULTS = Object.freeze({
  maxValueBytes: 1_048_576,
  maxPendingInvalidations: 10_000,
  freezeValues: true,
  callTimeoutMillis: 500,
  busSilenceMillis: 3_000,
});

const OPTION_KEYS: readonly (keyof TieredCacheOptions)[] = [
  'policies',
  'l2',
  'bus',
  'maxValueBytes',
  'serializer',
  'clock',
  'hotKeys',
  'maxPendingInvalidations',
  'freezeValues',
  'closeClients',
  'callTimeoutMillis',
  'busSilenceMillis',
];

/** Options of one `getOrLoad` call. */
export interface LoadOptions {
  /** Tags of the value, for `invalidateTags` (e.g. table names). */
  tags?: readonly string[];
}

const NO_TAGS: readonly string[] = Object.freeze([]);

/**
 * The tags of a `getOrLoad` call's options, which are checked: an unknown key (`tag`) is refused, not ignored.
 * @internal
 */
export function loadTags(options: LoadOptions | undefined): readonly string[] {
  if (options === undefined) return NO_TAGS;
  requireKnownKeys('getOrLoad', requireObject('getOrLoad', options), ['tags']);
  const tags = options.tags;
  if (tags === undefined) return NO_TAGS;
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) throw new ConfigError('getOrLoad.tags', `must be an array of strings, got ${describeValue(tags)}`);
  return tags;
}

/** Options of one `set` call. */
export interface SetOptions<T> {
  /** Writes the value to the source of truth first; when it throws, the cache is not touched. */
  save?: (value: T) => Promise<unknown>;
  /** Tags of the value. */
  tags?: readonly string[];
  /**
   * The source's version of this value (a row version, a commit sequence: a non-negative integer
   * that grows with every write of the key). Orders concurrent write-throughs of the key by several
   * instances: L2 keeps the greatest version, whatever order the writes arrive in. Without it, a
   * `save` orders the write (the key's L2 version is read before the save); without either, a
   * write-through to L2 cannot be ordered and the key is invalidated instead.
   * @default undefined
   */
  version?: number | bigint;
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
  readonly callTimeoutMillis: number;
  readonly busSilenceMillis: number;
}

/** @internal */
export function resolveTieredCacheOptions(options: TieredCacheOptions): ResolvedTieredCacheOptions {
  requireKnownKeys('', requireObject('options', options), OPTION_KEYS);
  const policies = [...resolvePolicies(options.policies).values()];
  for (const p of policies) {
    if (p.useL2 && options.l2 === undefined) throw new ConfigError('l2', `policy \`${p.name}\` uses level 'l2' but no L2 tier was given`);
  }
  if (options.closeClients !== undefined && !Array.isArray(options.closeClients)) throw new ConfigError('closeClients', 'must be an array of Redis clients');
  const closeClients = [...(options.closeClients ?? [])];
  const maxValueBytes = requireInteger('maxValueBytes', options.maxValueBytes ?? TIERED_CACHE_DEFAULTS.maxValueBytes, 1);
  const serializer = options.serializer ?? createSerializer({ maxValueBytes });
  const bus = options.bus;
  const busSilenceMillis = requireInteger('busSilenceMillis', options.busSilenceMillis ?? TIERED_CACHE_DEFAULTS.busSilenceMillis, 1);
  if (bus !== undefined && busSilenceMillis <= bus.heartbeatIntervalMillis) {
    throw new ConfigError('busSilenceMillis', `must exceed the bus's heartbeatIntervalMillis (${bus.heartbeatIntervalMillis}), got ${busSilenceMillis}`);
  }
  return {
    policies,
    l2: options.l2,
    bus,
    closeClients,
    serializer,
    clock: options.clock ?? systemClock,
    maxPendingInvalidations: requireInteger('maxPendingInvalidations', options.maxPendingInvalidations ?? TIERED_CACHE_DEFAULTS.maxPendingInvalidations, 0),
    freezeValues: requireBoolean('freezeValues', options.freezeValues ?? TIERED_CACHE_DEFAULTS.freezeValues),
    hotKeys: options.hotKeys === false ? null : new HotKeyTracker(options.hotKeys ?? {}),
    callTimeoutMillis: requireInteger('callTimeoutMillis', options.callTimeoutMillis ?? TIERED_CACHE_DEFAULTS.callTimeoutMillis, 1),
    busSilenceMillis,
  };
}
