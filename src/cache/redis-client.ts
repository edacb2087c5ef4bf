import { redisClientDefaults } from './redis-tier';

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
