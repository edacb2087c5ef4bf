import { Pool } from 'pg';
import type { ServerSpec } from './topology';

/** The few methods kysely-scale uses of a pooled client (pg's `PoolClient` fits). */
export interface PoolClientLike {
  query(text: string, values?: unknown[]): Promise<{ command: string; rowCount: number | null; rows: unknown[] }>;
  query<T>(submittable: T): T;
  release(destroy?: boolean | Error): void;
}

/** The few methods kysely-scale uses of a connection pool (pg's `Pool` fits). */
export interface PoolLike {
  connect(): Promise<PoolClientLike>;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
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

interface PoolEntry {
  readonly pool: PoolLike;
  inUse: number;
  retired: boolean;
}

/**
 * One pool per server URL, created on first use. When a new topology drops a server, its pool is
 * retired: it takes no new work and is ended once its last checked-out client comes back, so
 * in-flight queries finish.
 */
export class ServerPools {
  readonly #entries = new Map<string, PoolEntry>();
  readonly #createPool: (server: ServerSpec) => PoolLike;
  readonly #onError: (error: Error, server: ServerSpec) => void;
  #destroyed = false;

  constructor(createPool: (server: ServerSpec) => PoolLike, onError: (error: Error, server: ServerSpec) => void) {
    this.#createPool = createPool;
    this.#onError = onError;
  }

  /** Checks out a client of `server`; its `release` returns it and lets a retired pool end. */
  acquire(server: ServerSpec): Promise<PoolClientLike> {
    const entry = this.#entry(server);
    entry.inUse++;
    return entry.pool.connect().then(
      (client) => new CheckedOutClient(client, entry, this),
      (error: unknown) => {
        this.returned(entry);
        throw error;
      },
    );
  }

  /** Retires the pools of servers that `keep` does not list. */
  retainOnly(keep: ReadonlySet<string>): void {
    for (const [url, entry] of this.#entries) {
      if (keep.has(url)) continue;
      this.#entries.delete(url);
      entry.retired = true;
      if (entry.inUse === 0) void entry.pool.end();
    }
  }

  /** Ends every pool. */
  async destroy(): Promise<void> {
    this.#destroyed = true;
    const pools = [...this.#entries.values()].map((e) => e.pool.end());
    this.#entries.clear();
    await Promise.allSettled(pools);
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  #entry(server: ServerSpec): PoolEntry {
    let entry = this.#entries.get(server.url);
    if (entry === undefined) {
      const pool = this.#createPool(server);
      // Without a listener an idle client's network error would crash the process.
      // Errors of connections still closing after destroy() (pg's end() resolves before sockets close) are expected.
      pool.on('error', (error) => {
        if (!this.#destroyed) this.#onError(error, server);
      });
      entry = { pool, inUse: 0, retired: false };
      this.#entries.set(server.url, entry);
    }
    return entry;
  }

  /** @internal Called once per checkout when its client is released. */
  returned(entry: PoolEntry): void {
    entry.inUse--;
    if (entry.retired && entry.inUse === 0) void entry.pool.end();
  }
}

/** A checked-out client whose `release` runs once, however often it is called. */
class CheckedOutClient implements PoolClientLike {
  #client: PoolClientLike | null;
  readonly #entry: PoolEntry;
  readonly #pools: ServerPools;

  constructor(client: PoolClientLike, entry: PoolEntry, pools: ServerPools) {
    this.#client = client;
    this.#entry = entry;
    this.#pools = pools;
  }

  query(text: unknown, values?: unknown[]): never {
    const client = this.#client;
    if (client === null) throw new Error('kysely-scale: query on a released connection');
    return (client.query as (t: unknown, v?: unknown[]) => never).call(client, text, values);
  }

  release(destroy?: boolean | Error): void {
    const client = this.#client;
    if (client === null) return;
    this.#client = null;
    client.release(destroy);
    this.#pools.returned(this.#entry);
  }
}

/** The default pool factory: a pg `Pool` per server with the given options. */
export function pgPoolFactory(options: Readonly<Required<ServerPoolOptions>>): (server: ServerSpec) => PoolLike {
  return (server) =>
    new Pool({
      connectionString: server.url,
      max: options.max,
      idleTimeoutMillis: options.idleTimeoutMillis,
      connectionTimeoutMillis: options.connectionTimeoutMillis,
      application_name: options.applicationName,
      keepAlive: true,
      ...(options.statementTimeoutMillis > 0 ? { statement_timeout: options.statementTimeoutMillis } : {}),
    }) as unknown as PoolLike;
}
