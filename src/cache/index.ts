/**
 * `kysely-scale/cache`: the multi-level cache. A separate entry point so the core never loads
 * ioredis or lru-cache unless the cache is used.
 *
 * @packageDocumentation
 */
export {
  CacheValueTooLargeError,
  UnknownCachePolicyError,
  CacheLoaderTimeoutError,
  CacheSerializationError,
  CacheBackendUnavailableError,
} from './cache-errors';
export { systemClock, ManualClock, type Cancel, type Clock } from '../kernel/clock';
export { CACHE_POLICY_DEFAULTS, EXAMPLE_POLICIES, resolvePolicy, resolvePolicies, type CacheLevel, type CachePolicy, type CachePolicyOptions } from './cache-policy';
export type { CacheStats, PolicyStats, TierStats } from './cache-stats';
export { CircuitBreaker, CIRCUIT_BREAKER_DEFAULTS, type BreakerState, type CircuitBreakerOptions } from './circuit-breaker';
export { HashRing, HASH_RING_DEFAULTS, type HashRingOptions } from '../kernel/hash-ring';
export { HotKeyTracker, HOT_KEY_TRACKER_DEFAULTS, type HotKey, type HotKeyTrackerOptions } from './hot-key-tracker';
export { InvalidationBus, INVALIDATION_BUS_DEFAULTS, type BusMessage, type InvalidationBusOptions, type PubSubLike } from './invalidation-bus';
export { MemoryTier, MEMORY_TIER_DEFAULTS, type CacheEntry, type MemoryTierOptions, type TagStamp } from './memory-tier';
export { QueryCache, QUERY_CACHE_DEFAULTS, queryKey, tablesOf, tableTag, type CachedQueryOptions, type CompilableQuery, type QueryCacheOptions, type QueryExecutor, type WriteEventSource } from './query-cache';
export { L2_DEFAULTS, type L2CommonOptions, type L2Kind, type L2Tier, type RedisLike, type VersionToken } from './l2-tier';
export { singleRedisTier, type SingleRedisTierOptions } from './redis-single-tier';
export { clusterRedisTier, type ClusterRedisTierOptions, type ClusterSeed } from './redis-cluster-tier';
export { ringRedisTier, type RingRedisTierOptions, type RingServer } from './redis-ring-tier';
export { closeRedisClient, closeRedisClients, L2_CONNECTION_NAME, redisClientDefaults, redisSubscriberDefaults, type ClosableRedis } from './redis-client';
export { createSerializer, SERIALIZER_DEFAULTS, type CacheSerializer, type SerializerOptions } from './serializer';
export { SingleFlight, type Flight } from './single-flight';
export { TieredCache } from './tiered-cache';
export { PolicyCache } from './policy-cache';
export { TIERED_CACHE_DEFAULTS, type LoadOptions, type SetOptions, type TieredCacheOptions, type WarmUpResult } from './tiered-cache-options';
export type { CacheEvents } from './cache-events';
export type { CacheSuggestion } from './cache-advisor';
