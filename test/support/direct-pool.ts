import { Pool, type PoolConfig } from 'pg';

/**
 * A pg pool for a test's direct connections, with an `error` listener: pg-pool re-emits an idle
 * client's error on the pool, and `end()` resolves before its clients' sockets close, so a server
 * stopped right after (the next test's fault, or `afterAll`) can make a pool without a listener
 * throw an unhandled 57P01 into whichever test is running.
 */
export function directPool(config: PoolConfig): Pool {
  const pool = new Pool(config);
  pool.on('error', () => undefined);
  return pool;
}

/** A {@link directPool} to `url` connecting as `user` instead (an app role, so row security applies to it), for a dialect's `createPool`. */
export function poolAsRole(url: string, user: string, max: number): Pool {
  const asRole = new URL(url);
  asRole.username = user;
  return directPool({ connectionString: asRole.toString(), max });
}
