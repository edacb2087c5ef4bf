/** L2 on a Redis Cluster: ioredis routes each key to its slot's master. */
import { ConfigError } from '../kernel/errors';
import { requireKnownKeys } from '../kernel/validate';
import type { L2CommonOptions, L2Tier, RedisLike } from './l2-tier';
import { createClusterClient } from './redis-client';
import { checkClient } from './redis-client-check';
import { resolveL2Options } from './redis-l2-tier';
import { endpointTier } from './redis-single-tier';

/** One seed node of a Redis Cluster. */
export interface ClusterSeed {
  readonly host: string;
  readonly port: number;
}

/** Options of {@link clusterRedisTier}: either `cluster` or `nodes`. */
export interface ClusterRedisTierOptions extends L2CommonOptions {
  /**
   * An ioredis `Cluster` (created with `redisClientDefaults` as `redisOptions`). Not closed by the tier.
   * @default undefined (then `nodes` is required)
   */
  cluster?: RedisLike;
  /**
   * Seed nodes: the tier creates its `Cluster` client with `redisClientDefaults` and ends it in `close()`.
   * @default undefined (then `cluster` is required)
   */
  nodes?: readonly ClusterSeed[];
}

/** L2 on a Redis Cluster: ioredis routes each key to its slot's master. */
export function clusterRedisTier(options: ClusterRedisTierOptions): L2Tier {
  const o = resolveL2Options(options, ['cluster', 'nodes']);
  if (options.cluster !== undefined && options.nodes !== undefined) throw new ConfigError('nodes', 'give either `cluster` or `nodes`, not both');
  if (options.cluster !== undefined) {
    const client = checkClient('cluster', options.cluster);
    return endpointTier('cluster', { client, owned: null }, o);
  }
  const nodes = options.nodes;
  if (nodes === undefined) throw new ConfigError('cluster', 'is required (or `nodes`, seed nodes the tier connects to itself)');
  if (!Array.isArray(nodes) || nodes.length === 0) throw new ConfigError('nodes', 'must be a non-empty array of { host, port }');
  nodes.forEach((n: Partial<ClusterSeed> | null, i) => {
    if (typeof n?.host !== 'string' || !Number.isSafeInteger(n.port)) throw new ConfigError(`nodes[${i}]`, 'must be { host: string, port: integer }');
    requireKnownKeys(`nodes[${i}]`, n, ['host', 'port']);
  });
  const owned = createClusterClient(nodes);
  return endpointTier('cluster', { client: owned.client, owned }, o);
}
