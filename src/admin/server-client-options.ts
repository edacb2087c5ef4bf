/**
 * Deadlines of the short-lived connections operator commands open to shards. Apart from
 * server-client.ts so the public declarations never name pg's types (users need not install @types/pg).
 */

/** Deadlines of an operator's connection. */
export interface ServerClientOptions {
  /** Wait for a connection, and for its close (0: the default). @default 5000 */
  connectionTimeoutMillis?: number;
  /**
   * `statement_timeout` of the session (0: none), and a client-side deadline 500 ms later on each
   * statement, which a frozen server cannot ignore (0 keeps that one at the default).
   * @default 10000
   */
  statementTimeoutMillis?: number;
}

/** Defaults of {@link ServerClientOptions}. */
export const SERVER_CLIENT_DEFAULTS = Object.freeze({ connectionTimeoutMillis: 5000, statementTimeoutMillis: 10_000 });
