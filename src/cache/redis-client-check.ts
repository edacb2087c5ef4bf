/**
 * Checks of a Redis client passed to an L2 tier: a client that queues commands while disconnected,
 * or waits without a per-command timeout, would make cache reads hang instead of falling through
 * to L1 and the loader.
 */
import { ConfigError } from '../kernel/errors';
import { requireNonEmptyString } from '../kernel/validate';
import type { RedisLike } from './l2-tier';
import { createRedisClient, type OwnedClient } from './redis-client';

/**
 * The client passed as `option`, or a {@link ConfigError} naming the setting to change.
 * @internal
 */
export function checkClient(option: string, client: unknown): RedisLike {
  const c = client as RedisLike & { options?: { enableOfflineQueue?: boolean; commandTimeout?: unknown; redisOptions?: { commandTimeout?: unknown } } };
  if (c === null || typeof c !== 'object' || typeof c.get !== 'function' || typeof c.evalsha !== 'function') {
    throw new ConfigError(option, 'must be an ioredis Redis or Cluster client (or an object with the same methods)');
  }
  // An offline queue would hold commands while Redis is down and make reads hang instead of falling through.
  if (c.options?.enableOfflineQueue === true) throw new ConfigError(`${option}.options.enableOfflineQueue`, 'must be false for a cache client; see `redisClientDefaults`');
  // Without a per-command timeout, a Redis that stops answering (paused, network black hole) would
  // hang every read instead of letting it fall through to L1 and the loader.
  if (c.options !== undefined) {
    const cluster = c.options.redisOptions !== undefined || typeof (c as { nodes?: unknown }).nodes === 'function';
    const timeout = cluster ? c.options.redisOptions?.commandTimeout : c.options.commandTimeout;
    if (typeof timeout !== 'number' || !(timeout > 0)) {
      throw new ConfigError(`${option}.options.${cluster ? 'redisOptions.' : ''}commandTimeout`, 'must be a positive number of milliseconds for a cache client; see `redisClientDefaults`');
    }
  }
  return c;
}

/**
 * Where one tier endpoint's client comes from: passed in (checked), or a URL the tier connects to.
 * @internal
 */
export type EndpointSpec = { readonly client: RedisLike; readonly url?: undefined } | { readonly client?: undefined; readonly url: string };

/**
 * Checks that exactly one of `clientOption` and `urlOption` is given, and the client if that is the
 * one. Creates nothing, so a tier validates every option before it opens a connection. The URL never
 * appears in an error (it may hold a password).
 * @internal
 */
export function endpointSpec(clientOption: string, client: unknown, urlOption: string, url: unknown): EndpointSpec {
  if (client !== undefined && url !== undefined) throw new ConfigError(urlOption, `give either \`${clientOption}\` or \`${urlOption}\`, not both`);
  if (client !== undefined) return { client: checkClient(clientOption, client) };
  if (url === undefined) throw new ConfigError(clientOption, `is required (or \`${urlOption}\`, a redis:// URL the tier connects to itself)`);
  return { url: requireNonEmptyString(urlOption, url) };
}

/**
 * The client of one tier endpoint and, when the tier created it, the handle it ends in `close()`.
 * @internal
 */
export interface EndpointClient {
  readonly client: RedisLike;
  readonly owned: OwnedClient | null;
}

/**
 * The client passed in (never ended by the tier), or one created from the URL with
 * `redisClientDefaults` (ended by the tier's `close()`).
 * @internal
 */
export function openEndpoint(spec: EndpointSpec): EndpointClient {
  if (spec.client !== undefined) return { client: spec.client, owned: null };
  const owned = createRedisClient(spec.url);
  return { client: owned.client, owned };
}
