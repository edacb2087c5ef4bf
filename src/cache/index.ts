/**
 * `kysely-scale/cache`: the multi-level cache. A separate entry point so the core never loads
 * ioredis or lru-cache unless the cache is used.
 *
 * What is exported is what a user calls or names: the cache and its per-policy handle, the L2
 * tier factories, the invalidation bus, the query cache, the Redis client helpers, the serializer,
 * options types with their frozen defaults, the types in public signatures, and the errors. The
 * parts behind the facade (policy state, coherence, read and write paths, single-flight, breaker,
 * hash ring) are internal.
 *
 * @packageDocumentation
 */

// The cache
export { TieredCache } from './tiered-cache';
export { PolicyCache } from './policy-cache';
export { TIERED_CACHE_DEFAULTS, type LoadOptions, type SetOptions, type TieredCacheOptions, type WarmUpResult } from './tiered-cache-options';
export { CACHE_POLICY_DEFAULTS, EXAMPLE_POLICIES, type CacheLevel, type CachePolicy, type CachePolicyOptions } from './cache-policy';
export type { CacheEvents } from './cache-events';
export type { CacheSuggestion } from './cache-advisor';
export type { CacheStats, PolicyStats, TierStats } from './cache-stats';
export { HOT_KEY_TRACKER_DEFAULTS, type HotKey, type HotKeyTrackerOptions } from './hot-key-tracker';
export { MemoryTier, MEMORY_TIER_DEFAULTS, type CacheEntry, type MemoryTierOptions, type TagStamp } from './memory-tier';

// L2 tiers and their clients
export { L2_DEFAULTS, type L2CommonOptions, type L2Kind, type L2Tier, type L2WriteCondition, type RedisLike, type VersionToken } from './l2-tier';
export { singleRedisTier, type SingleRedisTierOptions } from './redis-single-tier';
export { clusterRedisTier, type ClusterRedisTierOptions, type ClusterSeed } from './redis-cluster-tier';
export { ringRedisTier, type RingRedisTierOptions, type RingServer } from './redis-ring-tier';
export { HASH_RING_DEFAULTS, type HashRingOptions } from '../kernel/hash-ring';
export { CIRCUIT_BREAKER_DEFAULTS, type BreakerState, type CircuitBreakerOptions } from './circuit-breaker';
export { closeRedisClient, closeRedisClients, L2_CONNECTION_NAME, redisClientDefaults, redisSubscriberDefaults, type ClosableRedis } from './redis-client';

// Coherence across instances, and query results
export { InvalidationBus, INVALIDATION_BUS_DEFAULTS, type BusMessage, type InvalidationBusOptions, type PubSubLike } from './invalidation-bus';
export { publishInstanceStats, readInstanceStats, INSTANCE_STATS_PREFIX, type InstanceStatsOptions, type InstanceStatsPublisher, type InstanceStatsSnapshot } from './instance-stats';
export { QueryCache, QUERY_CACHE_DEFAULTS, type CachedQueryOptions, type CompilableQuery, type QueryExecutor, type QueryCacheOptions, type WriteEventSource } from './query-cache';
export type { ReplicaFenceDialect } from './query-cache-fence';

// Values, time and errors
export { createSerializer, SERIALIZER_DEFAULTS, type CacheSerializer, type SerializerOptions } from './serializer';
export type { CacheKey } from './cache-key';
export { ManualClock, systemClock, type Cancel, type Clock } from '../kernel/clock';
export {
  CacheBackendUnavailableError,
  CacheKeyError,
  CacheLoaderTimeoutError,
  CacheSerializationError,
  CacheValueTooLargeError,
  UnknownCachePolicyError,
} from './cache-errors';
