/**
 * One short-lived connection to a shard's server for operator commands (checks, status), with a
 * client-side deadline on connecting, on each statement and on closing, and errors that name the
 * server (password redacted) while keeping pg's own fields (`code`, `detail`, …).
 */
import { Client, type QueryResult, type QueryResultRow } from 'pg';
import { isConnectionFailure } from '../cluster/connection-failure';
import { DeadlineError, withDeadline } from '../kernel/deadline';
import { redactText, redactUrl } from '../kernel/redact';
import { SERVER_CLIENT_DEFAULTS, type ServerClientOptions } from './server-client-options';

// Connection failures, refused logins (class 28) and a missing database (3D000): the server, not the statement.
const SERVER_SQLSTATE = /^(28...|3D000)$/;

/** Whether an error is about reaching or logging in to the server rather than about a statement. */
export function isServerFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return isConnectionFailure(error) || (typeof code === 'string' && SERVER_SQLSTATE.test(code));
}

/**
 * Prefixes `error`'s message with the server it came from (`shard1 primary postgres://app:***@db1:5432/app: …`),
 * once, and hides the URL's password anywhere in the message. The error object itself is kept,
 * so pg's fields stay as they are.
 */
export function nameServer<E>(error: E, label: string, url: string): E {
  // Duck-typed: errors of Node's own modules fail `instanceof Error` across realms (e.g. under Jest).
  const target = error as { message?: unknown } | null;
  if (typeof target !== 'object' || target === null || typeof target.message !== 'string') return error;
  const prefix = `${label} ${redactUrl(url)}: `;
  const message = redactText(target.message, [url]);
  target.message = message.startsWith(prefix) ? message : `${prefix}${message}`;
  return error;
}

/** The statements an operator command runs on one server: each under its client-side deadline. */
export interface ServerQueries {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

// A statement's deadline passes the session's statement_timeout by this much, so a server that still
// answers reports its own timeout (SQLSTATE 57014) first; pg's connect timeout, a backstop, passes ours by as much.
const GRACE_MILLIS = 500;

/**
 * Connects to `url`, runs `fn`, always closes; failures to reach the server name it (see
 * {@link nameServer}). Connecting, each statement and closing wait at most their deadline
 * ({@link ServerClientOptions}): a frozen server (one that enforces no statement_timeout) fails
 * the call with a message naming it, and its socket is destroyed rather than left open.
 */
export async function withServerClient<T>(url: string, label: string, fn: (client: ServerQueries) => Promise<T>, options: ServerClientOptions = {}): Promise<T> {
  const connectMillis = positiveOr(options.connectionTimeoutMillis, SERVER_CLIENT_DEFAULTS.connectionTimeoutMillis);
  const statementMillis = positiveOr(options.statementTimeoutMillis, SERVER_CLIENT_DEFAULTS.statementTimeoutMillis) + GRACE_MILLIS;
  const client = new Client({
    connectionString: url,
    connectionTimeoutMillis: connectMillis + GRACE_MILLIS,
    statement_timeout: options.statementTimeoutMillis ?? SERVER_CLIENT_DEFAULTS.statementTimeoutMillis,
    application_name: 'kysely-scale admin',
  });
  client.on('error', () => undefined); // a dropped connection also fails the pending query, which reports it
  const abandon = { onLate: () => destroySocket(client) };
  const queries: ServerQueries = {
    query: <R extends QueryResultRow>(text: string, values?: unknown[]) => withDeadline(client.query<R>(text, values), statementMillis, 'a statement', abandon),
  };
  try {
    await withDeadline(client.connect(), connectMillis, 'the login', abandon);
    return await fn(queries);
  } catch (error) {
    throw isServerFailure(error) || error instanceof DeadlineError ? nameServer(error, label, url) : error;
  } finally {
    await withDeadline(client.end(), connectMillis, 'the close', abandon).catch(() => undefined);
  }
}

/** `value` when it is a positive deadline; `fallback` for 0 ("none" server-side): every client-side wait keeps a deadline. */
function positiveOr(value: number | undefined, fallback: number): number {
  return value !== undefined && value > 0 ? value : fallback;
}

/**
 * Drops `client`'s socket at once. pg's Client has no public way to do it: end() sends a goodbye
 * and waits for the server to close its side, which a frozen server never does, and a socket left
 * open keeps the process alive.
 */
export function destroySocket(client: Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
