/**
 * One short-lived connection to a shard's server for operator commands (checks, status), with a
 * deadline on the connection and on each statement, and errors that name the server (password
 * redacted) while keeping pg's own fields (`code`, `detail`, …).
 */
import { Client } from 'pg';
import { isConnectionFailure } from '../cluster/connection-failure';
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

/** Connects to `url`, runs `fn`, always closes; failures to reach the server name it (see {@link nameServer}). */
export async function withServerClient<T>(url: string, label: string, fn: (client: Client) => Promise<T>, options: ServerClientOptions = {}): Promise<T> {
  const client = new Client({
    connectionString: url,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? SERVER_CLIENT_DEFAULTS.connectionTimeoutMillis,
    statement_timeout: options.statementTimeoutMillis ?? SERVER_CLIENT_DEFAULTS.statementTimeoutMillis,
    application_name: 'kysely-scale admin',
  });
  client.on('error', () => undefined); // a dropped connection also fails the pending query, which reports it
  try {
    await client.connect();
    return await fn(client);
  } catch (error) {
    throw isServerFailure(error) ? nameServer(error, label, url) : error;
  } finally {
    await client.end().catch(() => undefined);
  }
}
