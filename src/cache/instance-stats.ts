/**
 * What each service instance tells the dashboard: every `intervalMillis` it writes a snapshot of
 * its statement counts per shard and role (every ShardedDialect of the process), its cache's hits
 * and misses per policy and tier, and its balancer's instances to a Redis key that expires after a
 * few intervals (so a stopped instance disappears), and adds the key to a set the dashboard reads.
 * Counts are running totals; the dashboard turns them into rates. No URL with a password is written:
 * balancer addresses are redacted by the balancer's statistics.
 */
import type { Cluster, Redis } from 'ioredis';
import { addMetricSink } from '../kernel/telemetry';
import { requireInteger, requireNonEmptyString } from '../kernel/validate';
import type { BalancerStats } from '../balancer/balancer-stats';
import type { CacheStats } from './cache-stats';
import { closeRedisClient, createRedisClient } from './redis-client';

/** Key prefix of the snapshots; the set of live snapshot keys is `<prefix>instances`. */
export const INSTANCE_STATS_PREFIX = 'kysely-scale:stats:';

/** One instance's published snapshot. */
export interface InstanceStatsSnapshot {
  readonly instance: string;
  /** Wall-clock ms when it was taken. */
  readonly publishedAt: number;
  /** Statements run per shard and server role since the process started. */
  readonly statements: readonly { readonly shardId: string; readonly role: string; readonly count: number }[];
  /** Cache reads per policy and tier since the cache was created; null without a cache. */
  readonly cache: readonly { readonly policy: string; readonly tier: 'l1' | 'l2'; readonly hits: number; readonly misses: number }[] | null;
  /** The balancer's instances; null without a balancer. */
  readonly balancer: readonly {
    readonly id: string;
    readonly address: string;
    readonly healthy: boolean;
    readonly ejected: boolean;
    readonly inflight: number;
    readonly totalRequests: number;
    readonly failedRequests: number;
    readonly latencyP50Millis: number | null;
  }[] | null;
}

/** Options of {@link publishInstanceStats}. */
export interface InstanceStatsOptions {
  /** Redis URL, or an ioredis client (left open by `stop()`). */
  readonly redis: string | Redis | Cluster;
  /** This instance's name (host name, pod name). */
  readonly instance: string;
  readonly cache?: { stats(): CacheStats };
  readonly balancer?: { stats(): BalancerStats };
  /** How often to publish, in ms. @default 1000 */
  readonly intervalMillis?: number;
}

/** Counts of `kysely_scale.statements` by shard and role, from the moment the first publisher starts. */
const statementCounts = new Map<string, { shardId: string; role: string; count: number }>();
let counting = false;

function countStatements(): void {
  if (counting) return;
  counting = true;
  addMetricSink({
    declare: () => undefined,
    record: (metric, value, attributes) => {
      if (metric.spec.name !== 'kysely_scale.statements') return;
      const shardId = String(attributes['kysely_scale.shard.id']);
      const role = String(attributes['kysely_scale.server.role']);
      const key = `${shardId}\0${role}`;
      const entry = statementCounts.get(key) ?? { shardId, role, count: 0 };
      entry.count += value;
      statementCounts.set(key, entry);
    },
  });
}

/** The snapshot of this process now. */
export function instanceSnapshot(instance: string, sources: Pick<InstanceStatsOptions, 'cache' | 'balancer'>): InstanceStatsSnapshot {
  const cacheStats = sources.cache?.stats();
  const balancerStats = sources.balancer?.stats();
  return {
    instance,
    publishedAt: Date.now(),
    statements: [...statementCounts.values()].map((s) => ({ ...s })),
    cache:
      cacheStats === undefined
        ? null
        : Object.entries(cacheStats.policies).flatMap(([policy, p]) => [
            { policy, tier: 'l1' as const, hits: p.l1.hits, misses: p.l1.misses },
            { policy, tier: 'l2' as const, hits: p.l2.hits, misses: p.l2.misses },
          ]),
    balancer:
      balancerStats === undefined
        ? null
        : balancerStats.instances.map((i) => ({
            id: i.id,
            address: i.address,
            healthy: i.healthy,
            ejected: i.ejected,
            inflight: i.inflight,
            totalRequests: i.totalRequests,
            failedRequests: i.failedRequests,
            latencyP50Millis: i.latencyP50Millis ?? null,
          })),
  };
}

/** A running publisher. */
export interface InstanceStatsPublisher {
  /** Publishes now (the timer does it every interval). */
  publishNow(): Promise<void>;
  /** Stops publishing and removes this instance's snapshot. */
  stop(): Promise<void>;
}

/** Starts publishing this instance's snapshot to Redis every `intervalMillis` (see the module comment). */
export function publishInstanceStats(options: InstanceStatsOptions): InstanceStatsPublisher {
  const instance = requireNonEmptyString('instance', options.instance);
  const intervalMillis = requireInteger('intervalMillis', options.intervalMillis ?? 1000, 10);
  const owned = typeof options.redis === 'string' ? createRedisClient(options.redis) : undefined;
  const client = owned?.client ?? (options.redis as Redis | Cluster);
  const key = `${INSTANCE_STATS_PREFIX}${instance}`;
  countStatements();
  const publishNow = async (): Promise<void> => {
    await owned?.connecting;
    const snapshot = JSON.stringify(instanceSnapshot(instance, options));
    await client.set(key, snapshot, 'PX', intervalMillis * 5);
    await client.sadd(`${INSTANCE_STATS_PREFIX}instances`, key);
  };
  const timer = setInterval(() => void publishNow().catch(() => undefined), intervalMillis);
  timer.unref();
  void publishNow().catch(() => undefined);
  return {
    publishNow,
    async stop() {
      clearInterval(timer);
      await client.del(key).catch(() => undefined);
      await client.srem(`${INSTANCE_STATS_PREFIX}instances`, key).catch(() => undefined);
      if (owned !== undefined) await closeRedisClient(owned.client);
    },
  };
}

/** The snapshots instances published and that have not expired (the dashboard's reader). */
export async function readInstanceStats(client: Redis | Cluster): Promise<InstanceStatsSnapshot[]> {
  const setKey = `${INSTANCE_STATS_PREFIX}instances`;
  const keys = await client.smembers(setKey);
  if (keys.length === 0) return [];
  const values = await Promise.all(keys.map((k) => client.get(k)));
  const gone = keys.filter((_, i) => values[i] === null);
  if (gone.length > 0) await client.srem(setKey, ...gone);
  return values.flatMap((v) => {
    if (v === null) return [];
    try {
      return [JSON.parse(v) as InstanceStatsSnapshot];
    } catch {
      return [];
    }
  });
}

/** A Redis client for the dashboard, from a URL (its `close` ends it). */
export function dashboardRedis(url: string): { client: Redis | Cluster; connecting: Promise<void>; close(): Promise<void> } {
  const owned = createRedisClient(url);
  return { client: owned.client, connecting: owned.connecting, close: () => closeRedisClient(owned.client) };
}
