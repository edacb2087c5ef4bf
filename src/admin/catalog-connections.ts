/**
 * Connections to the topology catalog, every wait under a deadline: connecting (the login
 * included, and waiting for a free connection of the pool), each statement (the session's
 * `statement_timeout`, and a client-side deadline 500 ms later, which a frozen host or one that
 * silently drops packets cannot ignore: the connection is then dropped, never reused), and
 * closing. Without them every admin command and every instance's watch waited for the OS's TCP
 * timeout, forever for a host that still acknowledges packets but never answers (SIGSTOP).
 */
import { Client, Pool, type ClientConfig, type PoolClient, type QueryResult, type QueryResultRow } from 'pg';
import { DeadlineError, withDeadline } from '../kernel/deadline';
import { redactUrl } from '../kernel/redact';
import { requireInteger } from '../kernel/validate';
import { destroySocket } from './server-client';

/** Deadlines of the catalog's connections. */
export interface CatalogDeadlines {
  /** Wait for a connection to the catalog (the login included; also for a free one of the pool's two), and for its close. @default 5000 */
  connectionTimeoutMillis?: number;
  /**
   * `statement_timeout` of the catalog's sessions, and a client-side deadline 500 ms later on each
   * statement, which a frozen or unreachable host cannot ignore (the connection is dropped).
   * @default 10000
   */
  statementTimeoutMillis?: number;
}

/** Defaults of {@link CatalogDeadlines}. */
export const CATALOG_DEADLINE_DEFAULTS = Object.freeze({ connectionTimeoutMillis: 5000, statementTimeoutMillis: 10_000 });

// The client-side deadline passes the session's statement_timeout by this much, so a catalog that
// still answers reports its own timeout (SQLSTATE 57014) first.
const GRACE_MILLIS = 500;

/**
 * The catalog did not answer in time: connecting, a statement, or a watch's heartbeat. Its `code`
 * is `ETIMEDOUT`, what Node gives a connection the OS timed out, so whatever treats an
 * unreachable catalog as one (the mover's `catalog-unreachable` refusal, `migrate`'s report, a
 * router's catch-up) treats this the same, only sooner. `catalog` is its URL, password redacted.
 */
export class CatalogTimeoutError extends DeadlineError {
  readonly code = 'ETIMEDOUT';
  readonly catalog: string;

  constructor(catalog: string, waitedFor: string, millis: number, option: string) {
    super(`The catalog ${catalog}`, millis);
    this.name = 'CatalogTimeoutError';
    this.catalog = catalog;
    this.message = `The catalog ${catalog} did not answer ${waitedFor} within ${millis} ms (${option}): is its server up and reachable?`;
  }
}

/** The deadlines with their defaults, validated (`E_INVALID_CONFIG` naming the option). */
export function catalogDeadlines(options: CatalogDeadlines): Required<CatalogDeadlines> {
  const connectionTimeoutMillis = options.connectionTimeoutMillis ?? CATALOG_DEADLINE_DEFAULTS.connectionTimeoutMillis;
  const statementTimeoutMillis = options.statementTimeoutMillis ?? CATALOG_DEADLINE_DEFAULTS.statementTimeoutMillis;
  requireInteger('connectionTimeoutMillis', connectionTimeoutMillis, 1);
  requireInteger('statementTimeoutMillis', statementTimeoutMillis, 1);
  return { connectionTimeoutMillis, statementTimeoutMillis };
}

/** What a catalog session runs: statements, each under its deadline. */
export interface CatalogQueries {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/** A connection checked out of a {@link CatalogPool}; `release(true)` drops it instead of handing it back. */
export interface CatalogSession extends CatalogQueries {
  /** The pg client, for its `error` event. */
  readonly client: PoolClient;
  release(destroy?: boolean): void;
}

/** Messages pg and pg-pool give a connection attempt they timed out. */
const CONNECT_TIMEOUT = /timeout exceeded when trying to connect|connection timeout|timeout expired/i;

/** A small pool of catalog connections (two), every wait under {@link CatalogDeadlines}. */
export class CatalogPool implements CatalogQueries {
  readonly #pool: Pool;
  readonly #clients = new Set<Client>();
  readonly #catalog: string;
  readonly #deadlines: Required<CatalogDeadlines>;

  constructor(url: string, deadlines: Required<CatalogDeadlines>, applicationName: string) {
    this.#catalog = redactUrl(url);
    this.#deadlines = deadlines;
    this.#pool = new Pool({ ...sessionConfig(url, deadlines, applicationName), max: 2, allowExitOnIdle: true });
    this.#pool.on('error', () => undefined); // idle catalog connections may drop; the next call reconnects
    this.#pool.on('connect', (client) => this.#clients.add(client));
    this.#pool.on('remove', (client) => this.#clients.delete(client));
  }

  /** Checks out a connection within `connectionTimeoutMillis`. */
  async connect(): Promise<CatalogSession> {
    const { connectionTimeoutMillis } = this.#deadlines;
    const pending = this.#pool.connect();
    let client: PoolClient;
    try {
      // pg-pool times the attempt out itself; this is the backstop should it not.
      client = await withDeadline(pending, connectionTimeoutMillis + GRACE_MILLIS, 'a catalog connection', { onLate: () => void pending.then((c) => c.release(true), () => undefined) });
    } catch (error) {
      if (error instanceof DeadlineError || CONNECT_TIMEOUT.test((error as Error | undefined)?.message ?? '')) throw this.#connectTimeout();
      throw error;
    }
    return {
      client,
      query: (text, values) => timedQuery(client, text, values, this.#catalog, this.#deadlines.statementTimeoutMillis),
      release: (destroy = false) => client.release(destroy),
    };
  }

  /** One statement on a pooled connection (dropped, not reused, when it failed). */
  async query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    const session = await this.connect();
    let failed = false;
    try {
      return await session.query<R>(text, values);
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      session.release(failed);
    }
  }

  /** Closes every connection, waiting at most `connectionTimeoutMillis` (then dropping those left: a frozen host never acknowledges a goodbye). */
  async end(): Promise<void> {
    await withDeadline(this.#pool.end(), this.#deadlines.connectionTimeoutMillis, 'closing the catalog pool', {
      onLate: () => {
        for (const client of this.#clients) destroySocket(client);
      },
    }).catch(() => undefined);
  }

  #connectTimeout(): CatalogTimeoutError {
    return new CatalogTimeoutError(this.#catalog, 'while connecting', this.#deadlines.connectionTimeoutMillis, 'connectionTimeoutMillis');
  }
}

/** The pg settings of a catalog session: the deadlines, its application name, TCP keepalives. */
export function sessionConfig(url: string, deadlines: Required<CatalogDeadlines>, applicationName: string): ClientConfig {
  return {
    connectionString: url,
    application_name: applicationName,
    connectionTimeoutMillis: deadlines.connectionTimeoutMillis,
    statement_timeout: deadlines.statementTimeoutMillis,
    keepAlive: true,
  };
}

/** Connects `client` (configured by {@link sessionConfig}) within `connectionTimeoutMillis`; a late one is dropped. */
export async function connectCatalogClient(client: Client, url: string, deadlines: Required<CatalogDeadlines>): Promise<void> {
  try {
    await withDeadline(client.connect(), deadlines.connectionTimeoutMillis + GRACE_MILLIS, 'a catalog connection', { onLate: () => destroySocket(client) });
  } catch (error) {
    if (error instanceof DeadlineError || CONNECT_TIMEOUT.test((error as Error | undefined)?.message ?? '')) {
      throw new CatalogTimeoutError(redactUrl(url), 'while connecting', deadlines.connectionTimeoutMillis, 'connectionTimeoutMillis');
    }
    throw error;
  }
}

/**
 * `text` on `client` within `statementMillis` plus the grace; past it the connection is dropped
 * (its socket destroyed: a frozen host would never answer a cancel or a goodbye) and the call fails
 * with a {@link CatalogTimeoutError}. `onLate` runs first, before the socket goes.
 */
export async function timedQuery<R extends QueryResultRow>(
  client: Client,
  text: string,
  values: unknown[] | undefined,
  catalog: string,
  statementMillis: number,
  onLate?: (error: CatalogTimeoutError) => void,
): Promise<QueryResult<R>> {
  const millis = statementMillis + GRACE_MILLIS;
  const late = (): CatalogTimeoutError => new CatalogTimeoutError(catalog, 'a statement', millis, `statementTimeoutMillis + ${GRACE_MILLIS} ms`);
  try {
    return await withDeadline(client.query<R>(text, values), millis, 'a catalog statement', {
      onLate: () => {
        onLate?.(late());
        destroySocket(client);
      },
    });
  } catch (error) {
    if (error instanceof DeadlineError && !(error instanceof CatalogTimeoutError)) throw late();
    throw error;
  }
}
