/**
 * The Redis clients of the cache: the options they need, the clients an L2 tier creates itself,
 * and ending any of them whatever state it is in.
 */
// Named imports: in the ESM declarations a default import of this CommonJS package is its whole
// module.exports (a namespace, not the class), which breaks apps compiled with module: nodenext.
import { Cluster, Redis } from 'ioredis';

/**
 * ioredis options the cache needs: no offline queue (fail at once while disconnected), a
 * per-command timeout, no per-request retries, and reconnection with a backoff capped at 500 ms
 * (100, 200, 400, then every 500 ms), so a Redis that comes back is reconnected to, and what the
 * outage queued replayed, within about half a second (a 2 s cap made that up to 2.9 s). Spread them
 * into `new Redis({...redisClientDefaults, host, port})`.
 */
export const redisClientDefaults = Object.freeze({
  enableOfflineQueue: false,
  commandTimeout: 500,
  maxRetriesPerRequest: 0,
  connectTimeout: 2_000,
  retryStrategy: (times: number): number => Math.min(50 * 2 ** Math.min(times, 4), 500),
});

/**
 * ioredis options for the invalidation bus's subscriber: {@link redisClientDefaults} without
 * ioredis's own resubscription. The bus subscribes again itself after every reconnect (and only
 * then tells the cache to drop its L1); ioredis's automatic resubscribe is a command nobody awaits,
 * so when the client is closed while it is in flight it becomes an unhandled rejection
 * ("Connection is closed."), which ends a Node process by default.
 */
export const redisSubscriberDefaults = Object.freeze({ ...redisClientDefaults, autoResubscribe: false });

/** The ioredis members {@link closeRedisClient} uses; an ioredis `Redis` or `Cluster` fits. */
export interface ClosableRedis {
  readonly status?: string;
  quit(): Promise<unknown>;
  disconnect(reconnect?: boolean): void;
  once(event: string, listener: (...args: any[]) => void): unknown;
  removeListener(event: string, listener: (...args: any[]) => void): unknown;
}

/**
 * Ends an ioredis client whatever state it is in, and stops its reconnection for good.
 *
 * `quit()` alone is not enough for a cache client: with `enableOfflineQueue: false`, `quit()` on a
 * client that is connecting or reconnecting (Redis restarted, or down) rejects with "Stream isn't
 * writeable" and leaves the client reconnecting forever (a socket and a timer that keep the
 * process alive). Here a ready client is sent QUIT (replies to commands already sent still arrive),
 * any other client is disconnected at once.
 */
export async function closeRedisClient(client: ClosableRedis): Promise<void> {
  const status = client.status;
  if (status === 'end') return;
  // A client that never connected (`wait`) or is between attempts has no live stream: ioredis
  // emits no further 'end' for it once disconnected, so do not wait for one.
  if (status !== 'ready') {
    client.disconnect();
    return;
  }
  const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
  await ended;
}

/** {@link closeRedisClient} on each client, together. */
export async function closeRedisClients(clients: Iterable<ClosableRedis>): Promise<void> {
  await Promise.all([...clients].map((c) => closeRedisClient(c)));
}

/** The name (`CLIENT SETNAME`) of the connections an L2 tier opens itself, to tell them apart in `CLIENT LIST`. */
export const L2_CONNECTION_NAME = 'kysely-scale-l2';

/**
 * A client an L2 tier created itself (from a `url` or Cluster `nodes`): the tier ends it in `close()`.
 * Not exported from `kysely-scale/cache`, but not `@internal` either: other modules' declarations
 * name it, and `stripInternal` would remove it from under them.
 */
export interface OwnedClient {
  readonly client: Redis | Cluster;
  /** Settles (never rejects) once the first connection attempt succeeded or failed. */
  readonly connecting: Promise<void>;
}

/** @internal */
export function createRedisClient(url: string): OwnedClient {
  const client = new Redis(url, { ...redisClientDefaults, lazyConnect: true, connectionName: L2_CONNECTION_NAME });
  return own(client);
}

/** @internal */
export function createClusterClient(nodes: readonly { readonly host: string; readonly port: number }[]): OwnedClient {
  const client = new Cluster(
    nodes.map((n) => ({ host: n.host, port: n.port })),
    { enableOfflineQueue: false, lazyConnect: true, redisOptions: { ...redisClientDefaults, connectionName: L2_CONNECTION_NAME } },
  );
  return own(client);
}

function own(client: Redis | Cluster): OwnedClient {
  // Failures reach the tier's breaker through rejected commands; without a listener ioredis would
  // print every connection error.
  client.on('error', () => {});
  // Connect now so the first command does not fail only because the socket is not open yet; a
  // failed attempt is retried by the client's reconnect strategy.
  return { client, connecting: client.connect().then(() => undefined, () => undefined) };
}
