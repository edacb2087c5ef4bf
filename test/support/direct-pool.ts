import { Client, Pool, type ClientConfig, type PoolConfig } from 'pg';

/**
 * A pg pool for a test's direct connections, with an `error` listener: pg-pool re-emits an idle
 * client's error on the pool, and `end()` resolves before its clients' sockets close, so a server
 * stopped right after (the next test's fault, or `afterAll`) can make a pool without a listener
 * throw an unhandled 57P01 into whichever test is running. Each client listens too: pg-pool
 * listens only to idle ones, and a checked-out client between statements whose server goes away
 * crashed the load tests' app processes when a timed-out test's clusters were stopped.
 */
export function directPool(config: PoolConfig): Pool {
  const pool = new Pool(config);
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/**
 * A pg client for a test's direct connection, with an `error` listener. A client without one
 * crashes the Jest worker when its server goes away while no statement is pending on it (a
 * fault the test injects, or a cluster stopped in `afterAll` before the client ended), and the
 * crash is blamed on whichever test file that worker runs at the time. A statement pending on
 * the client still fails with the error, so nothing a test asserts is hidden.
 */
export function directClient(config: string | ClientConfig): Client {
  const client = new Client(config);
  client.on('error', () => undefined);
  return client;
}

/** A {@link directPool} to `url` connecting as `user` instead (an app role, so row security applies to it), for a dialect's `createPool`. */
export function poolAsRole(url: string, user: string, max: number): Pool {
  const asRole = new URL(url);
  asRole.username = user;
  return directPool({ connectionString: asRole.toString(), max });
}
