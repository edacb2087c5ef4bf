import { Redis } from 'ioredis';
import { pollUntil, type Deadline } from './cluster-wait';

/** Opens one short-lived Redis connection that never retries or queues, runs `fn`, and closes it. */
export async function withRedis<T>(
  address: { readonly host: string; readonly port: number },
  fn: (redis: Redis) => Promise<T>,
  connectTimeoutMillis = 2000,
): Promise<T> {
  const redis = new Redis({
    host: address.host,
    port: address.port,
    lazyConnect: true,
    connectTimeout: Math.max(1, Math.ceil(connectTimeoutMillis)),
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // Connection failures surface through connect(); without a listener ioredis would log them.
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    // After a failed connect the client has ended and its socket is closed: disconnect() would only
    // arm ioredis's disconnect timer on the dead socket and keep the process alive for it.
    if (redis.status !== 'end') redis.disconnect();
  }
}

/** Waits until the server answers PING (a loading server answers -LOADING, which counts as not yet). */
export async function waitForRedis(
  address: { readonly host: string; readonly port: number },
  what: string,
  deadline: Deadline,
  abortReason?: () => string | undefined,
): Promise<void> {
  await pollUntil(
    () => withRedis(address, async (r) => (await r.ping()) === 'PONG' || undefined, Math.min(1000, deadline.remainingMillis())),
    { deadline, what: `${what} to answer PING`, abortReason },
  );
}
