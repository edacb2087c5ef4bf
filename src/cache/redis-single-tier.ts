/** L2 on one Redis server; the shape a Cluster shares (one client, one breaker). */
import { CircuitBreaker } from './circuit-breaker';
import type { L2CommonOptions, L2Tier, RedisLike } from './l2-tier';
import { endpointSpec, openEndpoint, type EndpointClient } from './redis-client-check';
import { l2Node, RedisL2Tier, resolveL2Options, type L2Node, type ResolvedL2Options } from './redis-l2-tier';

/** Options of {@link singleRedisTier}: either `client` or `url`. */
export interface SingleRedisTierOptions extends L2CommonOptions {
  /**
   * The client (ioredis `Redis`, created with `redisClientDefaults`). Not closed by the tier.
   * @default undefined (then `url` is required)
   */
  client?: RedisLike;
  /**
   * A `redis://` (or `rediss://`) URL: the tier creates its client with `redisClientDefaults` and
   * ends it in `close()`.
   * @default undefined (then `client` is required)
   */
  url?: string;
}

/** L2 on one Redis server. */
export function singleRedisTier(options: SingleRedisTierOptions): L2Tier {
  const o = resolveL2Options(options, ['client', 'url']);
  const spec = endpointSpec('client', options.client, 'url', options.url);
  return endpointTier('single', openEndpoint(spec), o);
}

/**
 * A tier with one client and one breaker: a single server, or a Redis Cluster that ioredis routes
 * itself. MGET is batched only on a single server (a cluster's keys may span slots).
 * @internal
 */
export function endpointTier(kind: 'single' | 'cluster', endpoint: EndpointClient, o: ResolvedL2Options): L2Tier {
  let tier: RedisL2Tier | undefined;
  let node: L2Node | undefined;
  const breaker = new CircuitBreaker(o.clock, o.breaker, (s) => {
    if (s === 'open') node?.probe.start();
    if (s === 'closed') tier?.notifyRecovered();
  }, 'breaker');
  node = l2Node(kind === 'single' ? 'redis' : 'cluster', endpoint.client, endpoint.owned, breaker, o.clock);
  const owned = endpoint.owned === null ? [] : [endpoint.owned];
  const only = node;
  tier = new RedisL2Tier({ kind, nodes: [only], owner: () => only, invalidationTargets: () => [only], batchesMget: kind === 'single' }, o, owned);
  return tier;
}
