import { Pool } from 'pg';
import type { ServerSpec } from './topology';
import { redactUrl } from '../kernel/redact';
import { TOPOLOGY_VERSION_SETTING } from './topology-fence';

/** The parts of a pg result kysely-scale reads. */
export interface QueryResultLike {
  readonly command: string;
  readonly rowCount: number | null;
  readonly rows: unknown[];
  /** The row description: each field's type OID (pg's results have it; scatter merges need it). */
  readonly fields?: readonly { readonly dataTypeID: number }[];
}

/** The few methods kysely-scale uses of a pooled client (pg's `PoolClient` fits). */
export interface PoolClientLike {
  /** A statement; a scatter reads the type OIDs of its result's fields (as pg's results have them). */
  query(text: string, values?: unknown[]): Promise<QueryResultLike>;
  /** A statement by config: `name` runs it as a named prepared statement (a scatter's repeated statements, see `prepareScatterStatements`). */
  query(config: { name: string; text: string; values: unknown[] }): Promise<QueryResultLike>;
  query<T>(submittable: T): T;
  release(destroy?: boolean | Error): void;
}

/** The few methods kysely-scale uses of a connection pool (pg's `Pool` fits). */
export interface PoolLike {
  connect(): Promise<PoolClientLike>;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  /** Connections open (pg's `Pool` has these three counts; least-connections replica choice reads them). */
  readonly totalCount?: number;
  /** Open connections not checked out. */
  readonly idleCount?: number;
  /** Checkouts waiting for a connection. */
  readonly waitingCount?: number;
}

/** Options of the pg Pool created for every server. */
export interface ServerPoolOptions {
  /** Maximum connections per server. @default 10 */
  max?: number;
  /** Close a connection idle this long. @default 30000 */
  idleTimeoutMillis?: number;
  /** Fail `connect()` after this long (0 waits forever). @default 10000 */
  connectionTimeoutMillis?: number;
  /** Server-side `statement_timeout` for every connection (0 = none). @default 0 */
  statementTimeoutMillis?: number;
  /** `application_name` reported to PostgreSQL. @default 'kysely-scale' */
  applicationName?: string;
}

/** Defaults of {@link ServerPoolOptions}. */
export const SERVER_POOL_DEFAULTS: Readonly<Required<ServerPoolOptions>> = Object.freeze({
  max: 10,
  idleTimeoutMillis: 30_000,
  connectionTimeoutMillis: 10_000,
  statementTimeoutMillis: 0,
  applicationName: 'kysely-scale',
});

/** How long `destroy()` waits for pools to end before it destroys the sockets still open. */
export const DESTROY_DEADLINE_MILLIS = 5000;

/** What a pg client exposes of its socket. */
interface SocketHolder {
  readonly connection?: { readonly stream?: { destroy?(): void } };
}

/**
 * One pool per server URL, created on first use. When a new topology drops a server, its pool is
 * ended at once and leaves the map: pg's `end()` closes idle connections and lets checked-out ones
 * finish their queries, closing each when it is released, so in-flight work completes. (A custom
 * `PoolLike` must end the same way.) Clients are handed out as the pool gives them: a wrapper per
 * checkout cost about a microsecond per statement.
 */
export class ServerPools {
  readonly #pools = new Map<string, PoolLike>();
  /** Connections the pools opened and have not dropped (pg's Pool; empty for pools without those events). */
  readonly #open = new Set<SocketHolder>();
  readonly #createPool: (server: ServerSpec) => PoolLike;
  readonly #onError: (error: Error, server: ServerSpec) => void;
  #destroyed = false;

  constructor(createPool: (server: ServerSpec) => PoolLike, onError: (error: Error, server: ServerSpec) => void) {
    this.#createPool = createPool;
    this.#onError = onError;
  }

  /** Checks out a client of `server` (the pool is looked up and asked in the same tick, so it cannot be ended in between). */
  acquire(server: ServerSpec): Promise<PoolClientLike> {
    return this.#pool(server).connect();
  }

  /** Connections of `server`'s pool checked out or waited for; 0 before its first use. */
  busy(server: ServerSpec): number {
    const pool = this.#pools.get(server.url);
    if (pool === undefined) return 0;
    return (pool.totalCount ?? 0) - (pool.idleCount ?? 0) + (pool.waitingCount ?? 0);
  }

  /** Connections of each pool by state, for metrics (URLs redacted). */
  counts(): { redactedUrl: string; used: number; idle: number; waiting: number }[] {
    return [...this.#pools].map(([url, pool]) => {
      const idle = pool.idleCount ?? 0;
      return { redactedUrl: redactUrl(url), used: (pool.totalCount ?? 0) - idle, idle, waiting: pool.waitingCount ?? 0 };
    });
  }

  /** Ends the pools of servers that `keep` does not list; their checked-out clients finish first. */
  retainOnly(keep: ReadonlySet<string>): void {
    for (const [url, pool] of this.#pools) {
      if (keep.has(url)) continue;
      this.#pools.delete(url);
      void pool.end();
    }
  }

  /**
   * Ends every pool, within `deadlineMillis`: pg's `end()` waits for each connection to close,
   * which a hung (stopped) server never does, so the sockets of the connections still open at the
   * deadline are destroyed (pools whose clients expose pg's `connection.stream`), and it resolves.
   */
  async destroy(deadlineMillis = DESTROY_DEADLINE_MILLIS): Promise<void> {
    this.#destroyed = true;
    const ending = [...this.#pools.values()];
    const pools = ending.map((p) => p.end());
    this.#pools.clear();
    const all = Promise.allSettled(pools);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([all.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), deadlineMillis)))]);
    clearTimeout(timer);
    if (!late) return;
    // Connections still being opened never emitted 'connect': pg's Pool lists them in its clients.
    const clients = new Set(this.#open);
    for (const pool of ending) for (const client of (pool as { _clients?: readonly SocketHolder[] })._clients ?? []) clients.add(client);
    for (const client of clients) client.connection?.stream?.destroy?.();
    this.#open.clear();
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  #pool(server: ServerSpec): PoolLike {
    let pool = this.#pools.get(server.url);
    if (pool === undefined) {
      pool = this.#createPool(server);
      // Without a listener an idle client's network error would crash the process.
      // Errors of connections still closing after destroy() (pg's end() resolves before sockets close) are expected.
      pool.on('error', (error) => {
        if (!this.#destroyed) this.#onError(error, server);
      });
      // pg's Pool tells when it opens and drops a connection: what destroy() may have to cut.
      const events = pool as unknown as { on(event: 'connect' | 'remove', listener: (client: SocketHolder) => void): unknown };
      try {
        events.on('connect', (client) => {
          this.#open.add(client);
          // A custom pool's clients too: pg-pool listens only to idle ones, and a checked-out client
          // between statements (in a transaction) whose server goes away would crash the process.
          // The statement sent on it next fails with the error, so nothing is hidden.
          (client as { on?(event: 'error', listener: () => void): unknown }).on?.('error', ignoreError);
        });
        events.on('remove', (client) => this.#open.delete(client));
      } catch {
        // a custom pool without these events: destroy() then only waits for its end() up to the deadline
      }
      this.#pools.set(server.url, pool);
    }
    return pool;
  }
}

/**
 * The default pool factory: a pg `Pool` per server with the given options. With `sessionVersion`,
 * every connection the pool opens starts with the topology version it was created under in
 * `kysely_scale.topology_version` (a startup option: no extra round trip). With `customPlans`,
 * every connection plans each execution of a prepared statement afresh (`plan_cache_mode =
 * force_custom_plan`, PostgreSQL 12+): the slot fence's checks run while a statement is planned,
 * so a plan kept across executions would keep what an old fence said; parsing is still saved.
 */
export function pgPoolFactory(options: Readonly<Required<ServerPoolOptions>>, sessionVersion?: () => number, customPlans = false): (server: ServerSpec) => PoolLike {
  return (server) => {
    const startup = [
      ...(sessionVersion === undefined ? [] : [`-c ${TOPOLOGY_VERSION_SETTING}=${sessionVersion()}`]),
      ...(customPlans ? ['-c plan_cache_mode=force_custom_plan'] : []),
    ];
    const pool = new Pool({
      ...(startup.length === 0 ? {} : { options: startup.join(' ') }),
      connectionString: server.url,
      max: options.max,
      idleTimeoutMillis: options.idleTimeoutMillis,
      connectionTimeoutMillis: options.connectionTimeoutMillis,
      application_name: options.applicationName,
      keepAlive: true,
      // Idle pooled connections (and the replica lag checks' ones) never keep a process alive.
      allowExitOnIdle: true,
      ...(options.statementTimeoutMillis > 0 ? { statement_timeout: options.statementTimeoutMillis } : {}),
    });
    // pg-pool listens for errors of idle clients only. A server that drops a checked-out client
    // makes it emit 'error', which without a listener would crash the process; the statement on it
    // fails with the same error, so nothing is lost by listening here.
    pool.on('connect', (client) => client.on('error', ignoreError));
    return pool as unknown as PoolLike;
  };
}

function ignoreError(): void {}
