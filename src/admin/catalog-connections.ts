/**
 * Connections to the topology catalog, every wait under a deadline: connecting (the login
 * included, and waiting for a free connection of the pool), each statement (a client-side deadline
 * 500 ms past `statementTimeoutMillis`, which a frozen host or one that silently drops packets
 * cannot ignore: the connection is then dropped, never reused), and closing. Without them every
 * admin command and every instance's watch waited for the OS's TCP timeout, forever for a host
 * that still acknowledges packets but never answers (SIGSTOP).
 *
 * No server setting is sent at login (no `statement_timeout` startup parameter): PgBouncer refuses
 * a login that carries one (`08P01 unsupported startup parameter`). The publish's transaction sets
 * its own `statement_timeout` with `SET LOCAL` in the same round trip.
 */
import { Client, Pool, type ClientConfig, type PoolClient, type QueryResult, type QueryResultRow } from 'pg';
import { DeadlineError, withDeadline } from '../kernel/deadline';
import { ConfigError, ErrorCodes } from '../kernel/errors';
import { redactUrl } from '../kernel/redact';
import { requireInteger } from '../kernel/validate';
import { destroySocket } from './server-client';

/**
 * Deadlines of the catalog's connections. Left out, each comes from its environment variable when
 * set ({@link CATALOG_DEADLINE_ENVIRONMENT}: the admin CLI's `--catalog-connect-timeout-ms` and
 * `--catalog-timeout-ms` set them), else from {@link CATALOG_DEADLINE_DEFAULTS}.
 */
export interface CatalogDeadlines {
  /** Wait for a connection to the catalog (the login included; also for a free one of the pool's two), and for its close. @default 5000 */
  connectionTimeoutMillis?: number;
  /**
   * Each statement's deadline: a statement without an answer 500 ms past it has its connection
   * dropped (a frozen or unreachable host cannot ignore that) and fails. A publish's transaction
   * also runs under it on the server (`SET LOCAL statement_timeout`), so a catalog that answers
   * but is slow cancels the publish itself, its outcome known (nothing written).
   * @default 10000
   */
  statementTimeoutMillis?: number;
}

/** Defaults of {@link CatalogDeadlines}. */
export const CATALOG_DEADLINE_DEFAULTS = Object.freeze({ connectionTimeoutMillis: 5000, statementTimeoutMillis: 10_000 });

/** Environment variables that set a {@link CatalogDeadlines} option left out (whole milliseconds). */
export const CATALOG_DEADLINE_ENVIRONMENT = Object.freeze({
  connectionTimeoutMillis: 'KYSELY_SCALE_CATALOG_CONNECT_TIMEOUT_MS',
  statementTimeoutMillis: 'KYSELY_SCALE_CATALOG_TIMEOUT_MS',
});

/** The admin CLI's flag for each {@link CatalogDeadlines} option (named in timeout messages). */
export const CATALOG_DEADLINE_FLAGS = Object.freeze({
  connectionTimeoutMillis: '--catalog-connect-timeout-ms',
  statementTimeoutMillis: '--catalog-timeout-ms',
});

/**
 * The client-side deadline passes `statementTimeoutMillis` by this much, so a publish, which runs
 * under it on the server too, is cancelled by a catalog that still answers (SQLSTATE 57014,
 * nothing written) before the client gives up on it.
 */
export const GRACE_MILLIS = 500;

type DeadlineOption = keyof typeof CATALOG_DEADLINE_DEFAULTS;

/**
 * The catalog did not answer in time: connecting, a statement, or a watch's heartbeat. `code` is
 * `E_CATALOG_UNAVAILABLE`; `catalog` is its URL, password redacted; `option` the deadline that
 * passed; `cause` what the wait ended with (the client-side deadline, or pg's connection timeout).
 * A `DeadlineError`, so a router's catch-up on the catalog treats it as the end of its wait. The
 * message says what to check and which option (and CLI flag) to raise.
 */
export class CatalogTimeoutError extends DeadlineError {
  readonly code = ErrorCodes.CATALOG_UNAVAILABLE;
  readonly catalog: string;
  readonly option: DeadlineOption;
  /** `{ catalog, waitedFor, millis, option }`, as a `KyselyScaleError`'s. */
  readonly context: Readonly<Record<string, unknown>>;

  /**
   * @param details `outcome`: what became of a write that went unanswered, when that was learnt (a
   * publish's outcome); `within`: how `millis` is made up, when not one `option` (a move-record save's budget).
   */
  constructor(catalog: string, waitedFor: string, millis: number, option: DeadlineOption, cause?: unknown, details: { readonly outcome?: string; readonly within?: string } = {}) {
    super(`The catalog ${catalog}`, millis);
    this.name = 'CatalogTimeoutError';
    this.catalog = catalog;
    this.option = option;
    if (cause !== undefined) this.cause = cause;
    const { outcome } = details;
    this.context = Object.freeze({ catalog, waitedFor, millis, option, ...(outcome === undefined ? {} : { outcome }) });
    const within = `${millis} ms (${details.within ?? (option === 'statementTimeoutMillis' ? `statementTimeoutMillis + ${GRACE_MILLIS} ms` : option)})`;
    this.message =
      `The catalog ${catalog} did not answer ${waitedFor} within ${within}${outcome === undefined ? '' : `; ${outcome}`}: check that its server is up and reachable from here; ` +
      `if it is only slow, raise ${option} (the admin CLI's ${CATALOG_DEADLINE_FLAGS[option]}).`;
  }

  /** The message without its advice: `The catalog … did not answer … within … ms (…)`. */
  get summary(): string {
    return this.message.slice(0, this.message.indexOf(': check that its server'));
  }
}

/** The deadlines: the options, else their environment variables, else the defaults; validated (`E_INVALID_CONFIG` naming the option). */
export function catalogDeadlines(options: CatalogDeadlines): Required<CatalogDeadlines> {
  const connectionTimeoutMillis = options.connectionTimeoutMillis ?? fromEnvironment('connectionTimeoutMillis') ?? CATALOG_DEADLINE_DEFAULTS.connectionTimeoutMillis;
  const statementTimeoutMillis = options.statementTimeoutMillis ?? fromEnvironment('statementTimeoutMillis') ?? CATALOG_DEADLINE_DEFAULTS.statementTimeoutMillis;
  requireInteger('connectionTimeoutMillis', connectionTimeoutMillis, 1);
  requireInteger('statementTimeoutMillis', statementTimeoutMillis, 1);
  return { connectionTimeoutMillis, statementTimeoutMillis };
}

function fromEnvironment(option: DeadlineOption): number | undefined {
  const name = CATALOG_DEADLINE_ENVIRONMENT[option];
  const text = process.env[name]?.trim();
  if (text === undefined || text === '') return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new ConfigError(option, `${name} must be a whole number of milliseconds ≥ 1; got ${JSON.stringify(text)}`, { environment: name });
  return Number(text);
}

/** What a catalog session runs: statements, each under its deadline. */
export interface CatalogQueries {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/**
 * A connection checked out of a {@link CatalogPool}. It listens for its connection's `error` for
 * as long as it is checked out (a dropped connection would otherwise crash the process: pg-pool
 * listens only on idle ones). `release(true)` drops it instead of handing it back; a lost session
 * is always dropped.
 */
export interface CatalogSession extends CatalogQueries {
  readonly client: PoolClient;
  /**
   * Aborted, with the reason, once the session is lost: its connection failed, or a statement
   * passed its deadline and the connection was dropped. Send nothing more on it (no `rollback`
   * over a dead socket): release it.
   */
  readonly lost: AbortSignal;
  /** The server process of the session (from the login's BackendKeyData; a pooler's own number behind PgBouncer). */
  readonly processId: number | undefined;
  release(destroy?: boolean): void;
}

/** Messages pg and pg-pool give a connection attempt they timed out. */
const CONNECT_TIMEOUT = /timeout exceeded when trying to connect|connection timeout|timeout expired/i;

/** A small pool of catalog connections (two), every wait under {@link CatalogDeadlines}. */
export class CatalogPool implements CatalogQueries {
  readonly #pool: Pool;
  readonly #clients = new Set<Client>();
  /** Connections opened before the last {@link renew}: dropped when next checked out. */
  readonly #stale = new WeakSet<Client>();
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

  /** The deadlines its connections and statements run under. */
  get deadlines(): Required<CatalogDeadlines> {
    return this.#deadlines;
  }

  /** The catalog's URL, password redacted. */
  get redactedUrl(): string {
    return this.#catalog;
  }

  /**
   * Opens new connections from now on: those opened before are dropped when next checked out (idle
   * ones at once, as they are picked). Call it when a connection broke under a statement: a catalog
   * restart or a failover behind its address broke the others with it, unseen until used.
   */
  renew(): void {
    for (const client of this.#clients) this.#stale.add(client);
  }

  /** Checks out a connection within `connectionTimeoutMillis`. */
  async connect(): Promise<CatalogSession> {
    const { connectionTimeoutMillis } = this.#deadlines;
    let client: PoolClient;
    for (;;) {
      const pending = this.#pool.connect();
      try {
        // pg-pool times the attempt out itself; this is the backstop should it not.
        client = await withDeadline(pending, connectionTimeoutMillis + GRACE_MILLIS, 'a catalog connection', { onLate: () => void pending.then((c) => c.release(true), () => undefined) });
      } catch (error) {
        if (error instanceof DeadlineError || CONNECT_TIMEOUT.test((error as Error | undefined)?.message ?? '')) throw this.#connectTimeout(error);
        throw error;
      }
      if (!this.#stale.has(client)) break;
      // An idle one from before a renew (a stale one is never handed out again, so this ends).
      client.on('error', () => undefined);
      client.release(true);
    }
    const lost = new AbortController();
    const onError = (error: Error): void => {
      if (!lost.signal.aborted) lost.abort(error);
    };
    client.on('error', onError);
    let released = false;
    return {
      client,
      lost: lost.signal,
      processId: processIdOf(client),
      query: (text, values) => timedQuery(client, text, values, this.#catalog, this.#deadlines.statementTimeoutMillis, onError),
      release: (destroy = false) => {
        if (released) return;
        released = true;
        client.off('error', onError);
        const drop = destroy || lost.signal.aborted;
        // A dropped client ends asynchronously and pg-pool no longer listens to it: an error that
        // arrives meanwhile (its server process ended, by the operator lock's orphan clean-up or a
        // restart) would otherwise crash the process. A client handed back is pg-pool's to watch.
        if (drop) client.on('error', () => undefined);
        client.release(drop);
      },
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

  #connectTimeout(cause: unknown): CatalogTimeoutError {
    return new CatalogTimeoutError(this.#catalog, 'while connecting', this.#deadlines.connectionTimeoutMillis, 'connectionTimeoutMillis', cause);
  }
}

/** The server process id a client learnt at its login (BackendKeyData), if it did. */
export function processIdOf(client: Client): number | undefined {
  const pid = (client as unknown as { processID?: unknown }).processID;
  return typeof pid === 'number' ? pid : undefined;
}

/**
 * The pg settings of a catalog session: the connect deadline, its application name, TCP
 * keepalives. No server setting at login (PgBouncer refuses startup parameters it does not track,
 * `statement_timeout` among them): statements have client-side deadlines.
 */
export function sessionConfig(url: string, deadlines: Required<CatalogDeadlines>, applicationName: string): ClientConfig {
  return {
    connectionString: url,
    application_name: applicationName,
    connectionTimeoutMillis: deadlines.connectionTimeoutMillis,
    keepAlive: true,
  };
}

/** Connects `client` (configured by {@link sessionConfig}) within `connectionTimeoutMillis`; a late one is dropped. */
export async function connectCatalogClient(client: Client, url: string, deadlines: Required<CatalogDeadlines>): Promise<void> {
  try {
    await withDeadline(client.connect(), deadlines.connectionTimeoutMillis + GRACE_MILLIS, 'a catalog connection', { onLate: () => destroySocket(client) });
  } catch (error) {
    if (error instanceof DeadlineError || CONNECT_TIMEOUT.test((error as Error | undefined)?.message ?? '')) {
      throw new CatalogTimeoutError(redactUrl(url), 'while connecting', deadlines.connectionTimeoutMillis, 'connectionTimeoutMillis', error);
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
  const late = (cause?: unknown): CatalogTimeoutError => new CatalogTimeoutError(catalog, 'a statement', millis, 'statementTimeoutMillis', cause);
  try {
    return await withDeadline(client.query<R>(text, values), millis, 'a catalog statement', {
      onLate: () => {
        onLate?.(late(new DeadlineError('a catalog statement', millis)));
        destroySocket(client);
      },
    });
  } catch (error) {
    if (error instanceof DeadlineError && !(error instanceof CatalogTimeoutError)) throw late(error);
    throw error;
  }
}
