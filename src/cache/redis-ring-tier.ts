/**
 * L2 on a client-side consistent-hash ring of standalone Redis servers: the router that finds a
 * key's server, skips unreachable ones, and clears a returning server before it is used again.
 */
import { ConfigError } from '../kernel/errors';
import { requireKnownKeys, requireNonEmptyString, requireObject } from '../kernel/validate';
import { HashRing, type HashRingOptions } from '../kernel/hash-ring';
import { CircuitBreaker } from './circuit-breaker';
import type { L2CommonOptions, L2Tier, RedisLike } from './l2-tier';
import { endpointSpec, openEndpoint } from './redis-client-check';
import { l2Node, RedisL2Tier, resolveL2Options, scanDelete, type L2Node, type NodeRouter } from './redis-l2-tier';

/** One standalone server of a ring: either `client` or `url`. */
export interface RingServer {
  /** Stable id, hashed onto the ring (not the address, so a server can move). */
  id: string;
  /**
   * Its client. Not closed by the tier.
   * @default undefined (then `url` is required)
   */
  client?: RedisLike;
  /**
   * A `redis://` URL: the tier creates the client with `redisClientDefaults` and ends it in `close()`.
   * @default undefined (then `client` is required)
   */
  url?: string;
}

/** Options of {@link ringRedisTier}. */
export interface RingRedisTierOptions extends L2CommonOptions, HashRingOptions {
  /** The standalone servers, at least one. */
  servers: readonly RingServer[];
}

/**
 * L2 on a client-side consistent-hash ring of standalone servers (MurmurHash3, 150 virtual nodes
 * each). A server whose breaker opens is skipped: its keys go to the next server on the ring. When
 * it answers again, its keys under the prefix are deleted before it is used (it missed the
 * invalidations of the outage), and invalidations always reach both a key's owner and its stand-in.
 */
export function ringRedisTier(options: RingRedisTierOptions): L2Tier {
  const o = resolveL2Options(options, ['servers', 'virtualNodes']);
  if (!Array.isArray(options.servers) || options.servers.length === 0) throw new ConfigError('servers', 'a ring needs at least one server');
  options.servers.forEach((s, i) => {
    requireKnownKeys(`servers[${i}]`, requireObject(`servers[${i}]`, s), ['id', 'client', 'url']);
    requireNonEmptyString(`servers[${i}].id`, s.id);
  });
  const specs = options.servers.map((s, i) => endpointSpec(`servers[${i}].client`, s.client, `servers[${i}].url`, s.url));
  const nodes: L2Node[] = [];
  const breakers = options.servers.map(
    (_, i) =>
      new CircuitBreaker(o.clock, o.breaker, (state) => {
        if (state !== 'open') return;
        nodes[i]!.usable = false;
        nodes[i]!.probe.start();
      }, `servers[${i}].breaker`),
  );
  const ring = new HashRing(
    options.servers.map((s) => s.id),
    options.virtualNodes === undefined ? {} : { virtualNodes: options.virtualNodes },
  );
  // Every option is valid: only now may connections be opened.
  const endpoints = specs.map(openEndpoint);
  let tier: RedisL2Tier | undefined;
  const rejoining = new Map<L2Node, Promise<void>>();
  /** Clears what a returning server may still hold from before its outage, then uses it again. */
  const clearAndRejoin = (n: L2Node): Promise<void> => {
    let p = rejoining.get(n);
    if (p === undefined) {
      p = scanDelete(n.client, o.prefix)
        .then(() => {
          n.usable = true;
          n.breaker.success();
          tier?.notifyRecovered();
        })
        .finally(() => rejoining.delete(n));
      rejoining.set(n, p);
    }
    return p;
  };
  // A ring server's background probe is its rejoin.
  options.servers.forEach((s, i) => nodes.push(l2Node(s.id, endpoints[i]!.client, endpoints[i]!.owned, breakers[i]!, o.clock, () => clearAndRejoin(nodes[i]!))));
  const rejoin = (n: L2Node): void => {
    // The breaker lets one caller's probe through; it clears what the server may still hold from before.
    if (rejoining.has(n) || !n.breaker.allow()) return;
    clearAndRejoin(n).catch(() => n.breaker.failure());
  };
  const usable = (n: L2Node): boolean => {
    if (n.usable) return true;
    if (n.breaker.state === 'halfOpen') rejoin(n);
    return false;
  };
  const router: NodeRouter = {
    kind: 'ring',
    nodes,
    batchesMget: true,
    owner(key) {
      const first = nodes[ring.ownerIndex(key)]!;
      if (first.usable) return first;
      for (const m of ring.walk(key)) if (usable(nodes[m]!)) return nodes[m]!;
      return undefined;
    },
    invalidationTargets(key) {
      // The owner and the next usable server: whichever one serves the key, it no longer holds it.
      const out: L2Node[] = [];
      for (const m of ring.walk(key)) {
        if (usable(nodes[m]!)) out.push(nodes[m]!);
        if (out.length === 2) break;
      }
      return out;
    },
  };
  tier = new RedisL2Tier(router, o, endpoints.flatMap((e) => (e.owned === null ? [] : [e.owned])));
  return tier;
}
