/**
 * The mover's connections to shard primaries. Every session sets `kysely_scale.bypass = on` (it
 * sees hidden rows and writes through fences) and names itself, so fence waits can ignore it. Its
 * statements run without parallel workers (bounded parallelism: one backend per mover session).
 */
import { Client, type ClientConfig } from 'pg';
import { redactText } from '../../kernel/redact';
import { destroySocket } from '../server-client';
import type { Clock } from '../../kernel/clock';
import { withDeadline } from '../../kernel/deadline';
import { learnBackendPid, rawQuery, registerShardSession, sessionClock, type ShardDeadlines } from './shard-deadlines';

/** How long a rollback may take before the session is dropped instead. */
const ROLLBACK_DEADLINE_MILLIS = 5000;

/** How long a close waits for the server to take its goodbye (a frozen one never does) before the socket goes: the server ends the backend either way. */
const CLOSE_DEADLINE_MILLIS = 1000;

/** Whose session it is: its shard's name (for errors), its statements' deadlines (see `shard-deadlines.ts`) and the clock they run on. */
export interface ShardSessionOptions {
  readonly shard: string;
  readonly deadlines?: Partial<ShardDeadlines>;
  readonly clock?: Clock;
}

/** `application_name` of every mover session. */
export const MOVER_APPLICATION_NAME = 'kysely-scale mover';

/** A connected mover session; `close()` ends it (never throws); `destroy()` drops its socket at once (a server that stopped answering). */
export interface ShardSession {
  readonly client: Client;
  close(): Promise<void>;
  destroy(): void;
}

/**
 * Opens a mover session on `url`; fails with a redacted message when the server cannot be reached
 * in `connectTimeoutMillis`. Every statement of it runs under its deadlines (`shard-deadlines.ts`:
 * `owner`'s, else the defaults, naming the server by its address).
 */
export async function openShardSession(url: string, connectTimeoutMillis = 10_000, owner?: ShardSessionOptions): Promise<ShardSession> {
  const { connectionString, options } = withMoverOptions(url);
  const config: ClientConfig = {
    connectionString,
    application_name: MOVER_APPLICATION_NAME,
    connectionTimeoutMillis: connectTimeoutMillis,
    options,
    keepAlive: true,
  };
  const client = new Client(config);
  registerShardSession(client, {
    shard: owner?.shard ?? `${client.host}:${client.port}/${client.database ?? ''}`,
    url,
    ...(owner?.deadlines === undefined ? {} : { deadlines: owner.deadlines }),
    ...(owner?.clock === undefined ? {} : { clock: owner.clock }),
  });
  // A session lost while idle must not crash the process; the next query reports it.
  client.on('error', () => undefined);
  try {
    await client.connect();
    // The pid its deadlines' probes ask about: the server's, not a pooler's (one statement at login).
    await learnBackendPid(client, connectTimeoutMillis);
  } catch (error) {
    await client.end().catch(() => undefined);
    const message = redactText((error as Error).message);
    throw Object.assign(new Error(message), { code: (error as { code?: unknown }).code });
  }
  return {
    client,
    // A goodbye, unless the server does not take it in time (a frozen one never acknowledges it): then the socket goes.
    close: () => withDeadline(client.end(), CLOSE_DEADLINE_MILLIS, 'a mover session close', { clock: sessionClock(client), onLate: () => destroySocket(client) }).catch(() => undefined),
    destroy: () => destroySocket(client),
  };
}

// No parallel workers: a mover scan must not take every core from the app's statements.
const MOVER_OPTIONS = '-c kysely_scale.bypass=on -c max_parallel_workers_per_gather=0';

/**
 * The mover's session settings added to any `options` the shard URL carries (`?options=-c …`):
 * pg lets the connection string's options replace the config's, which would drop the bypass. The
 * mover's come last, so they win over the URL's for the same setting.
 */
function withMoverOptions(url: string): { connectionString: string; options: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { connectionString: url, options: MOVER_OPTIONS }; // not a URL: pg parses it, and it names no options here
  }
  const own = parsed.searchParams.get('options');
  if (own === null) return { connectionString: url, options: MOVER_OPTIONS };
  parsed.searchParams.delete('options');
  return { connectionString: parsed.toString(), options: `${own} ${MOVER_OPTIONS}` };
}

/** Runs `fn` with a mover session on `url`, closing it afterwards. */
export async function withShardSession<T>(url: string, fn: (client: Client) => Promise<T>, owner?: ShardSessionOptions): Promise<T> {
  const session = await openShardSession(url, undefined, owner);
  try {
    return await fn(session.client);
  } finally {
    await session.close();
  }
}

/**
 * Rolls back `client`'s transaction after a failure; a session that does not answer in time (a
 * server that stopped answering, a stream left half read) is dropped instead, which ends its
 * backend and so its transaction. Timed on `clock`, else the session's. Never throws.
 */
export async function rollbackOrDrop(client: Client, clock: Clock = sessionClock(client)): Promise<void> {
  const rollback = rawQuery(client)('rollback') as Promise<unknown>;
  await withDeadline(rollback, ROLLBACK_DEADLINE_MILLIS, 'a mover rollback', { clock, onLate: () => destroySocket(client) }).catch(() => undefined);
}
