import { Client, Pool, type PoolClient } from 'pg';
import { ConfigError, OperatorBusyError, TopologyConflictError, redactUrl } from '../errors';
import type { Topology } from '../sharding/topology';
import { fromDocument, toDocument } from './topology-document';

/** Options of {@link TopologyCatalog}. */
export interface TopologyCatalogOptions {
  /** Connection URL of the catalog database (any PostgreSQL database every instance can reach). */
  url: string;
  /** Schema holding the catalog's table. @default 'kysely_scale' */
  schema?: string;
  /** Wait before reconnecting a watch whose connection failed. @default 1000 */
  reconnectDelayMillis?: number;
}

/** Defaults of {@link TopologyCatalogOptions}. */
export const TOPOLOGY_CATALOG_DEFAULTS = Object.freeze({ schema: 'kysely_scale', reconnectDelayMillis: 1000 });

/** One published version, as {@link TopologyCatalog.history} lists it. */
export interface PublishedTopology {
  readonly version: number;
  readonly publishedAt: Date;
  readonly note: string | null;
}

/** A running watch; `close()` stops it. */
export interface TopologyWatch {
  close(): Promise<void>;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
// One lock for all operators of a catalog: two slot moves at once could publish over each other.
const OPERATOR_LOCK_KEY = 'kysely_scale_operator';

/**
 * The shared, versioned record of the cluster's topology, in a PostgreSQL table. Operators publish
 * new versions (optimistically: a version that is not newer than the latest fails with
 * {@link TopologyConflictError}); every service instance watches it (LISTEN/NOTIFY, plus a reload
 * after any reconnect so a missed notification is never a missed version) and swaps its dialect's
 * topology. Operators take {@link TopologyCatalog.withOperatorLock} around multi-step changes.
 */
export class TopologyCatalog {
  readonly #url: string;
  readonly #table: string;
  readonly #channel: string;
  readonly #reconnectDelayMillis: number;
  readonly #pool: Pool;

  constructor(options: TopologyCatalogOptions) {
    if (typeof options.url !== 'string' || !/^postgres(ql)?:\/\//.test(options.url)) throw new ConfigError('url', 'must be a postgres:// connection URL');
    const schema = options.schema ?? TOPOLOGY_CATALOG_DEFAULTS.schema;
    if (!IDENTIFIER.test(schema)) throw new ConfigError('schema', `must be a lower-case SQL identifier; got ${JSON.stringify(schema)}`);
    const reconnectDelayMillis = options.reconnectDelayMillis ?? TOPOLOGY_CATALOG_DEFAULTS.reconnectDelayMillis;
    if (!Number.isInteger(reconnectDelayMillis) || reconnectDelayMillis < 0) throw new ConfigError('reconnectDelayMillis', `must be an integer ≥ 0; got ${String(reconnectDelayMillis)}`);
    this.#url = options.url;
    this.#table = `"${schema}"."topology"`;
    this.#channel = `${schema}_topology`;
    this.#reconnectDelayMillis = reconnectDelayMillis;
    this.#pool = new Pool({ connectionString: options.url, max: 2, allowExitOnIdle: true, application_name: 'kysely-scale catalog' });
    this.#pool.on('error', () => undefined); // idle catalog connections may drop; the next call reconnects
  }

  /** The catalog database's URL with its password redacted. */
  get redactedUrl(): string {
    return redactUrl(this.#url);
  }

  /** Creates the catalog's schema and table if missing (idempotent). */
  async install(): Promise<void> {
    const schema = this.#table.split('.')[0]!;
    await this.#pool.query(`create schema if not exists ${schema}`);
    await this.#pool.query(
      `create table if not exists ${this.#table} (version integer primary key check (version > 0), document jsonb not null, note text, published_at timestamptz not null default now())`,
    );
  }

  /** The newest published topology, or `undefined` when none was published. */
  async latest(): Promise<Topology | undefined> {
    const { rows } = await this.#pool.query<{ document: unknown }>(`select document from ${this.#table} order by version desc limit 1`);
    return rows[0] === undefined ? undefined : fromDocument(rows[0].document);
  }

  /** Published versions, newest first. */
  async history(limit = 20): Promise<PublishedTopology[]> {
    const { rows } = await this.#pool.query<{ version: number; published_at: Date; note: string | null }>(
      `select version, published_at, note from ${this.#table} order by version desc limit $1`,
      [limit],
    );
    return rows.map((r) => Object.freeze({ version: r.version, publishedAt: r.published_at, note: r.note }));
  }

  /**
   * Publishes `topology` as the newest version and notifies every watcher. It must be newer than
   * the latest version, else {@link TopologyConflictError} (nothing is written): another operator
   * published meanwhile, so reload and plan again.
   */
  async publish(topology: Topology, note?: string): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query('begin');
      // Serializes publishers: the version check and the insert see the same latest version.
      await client.query(`lock table ${this.#table} in exclusive mode`);
      const { rows } = await client.query<{ latest: number | null }>(`select max(version) as latest from ${this.#table}`);
      const latest = rows[0]?.latest ?? 0;
      if (topology.version <= latest) {
        throw new TopologyConflictError(`Topology version ${topology.version} is not newer than the catalog's version ${latest}: reload the latest, apply your change to it and publish again.`, {
          latest,
          attempted: topology.version,
        });
      }
      await client.query(`insert into ${this.#table} (version, document, note) values ($1, $2, $3)`, [topology.version, JSON.stringify(toDocument(topology)), note ?? null]);
      await client.query('select pg_notify($1, $2)', [this.#channel, String(topology.version)]);
      await client.query('commit');
    } catch (error) {
      await client.query('rollback').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  /**
   * Calls `listener` with the latest topology now (if any) and with every newer version once it is
   * published, in increasing order of version. The watch survives lost connections: it reconnects
   * after `reconnectDelayMillis` and reloads, so it never skips past a version it missed.
   */
  async watch(listener: (topology: Topology) => void, onError: (error: Error) => void = () => undefined): Promise<TopologyWatch> {
    let seen = 0;
    let closed = false;
    let client: Client | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;

    const deliverLatest = async (): Promise<void> => {
      const topology = await this.latest();
      if (closed || topology === undefined || topology.version <= seen) return;
      seen = topology.version;
      listener(topology);
    };
    const connect = async (): Promise<void> => {
      const next = new Client({ connectionString: this.#url, application_name: 'kysely-scale catalog watch' });
      next.on('error', (error) => {
        onError(error);
        reconnect();
      });
      next.on('notification', () => void deliverLatest().catch(onError));
      await next.connect();
      client = next;
      await next.query(`listen "${this.#channel}"`);
      await deliverLatest(); // a version published while we were not listening
    };
    const reconnect = (): void => {
      const failed = client;
      client = undefined;
      failed?.removeAllListeners('notification');
      void failed?.end().catch(() => undefined);
      if (closed || retry !== undefined) return;
      retry = setTimeout(() => {
        retry = undefined;
        if (!closed) connect().catch((error: Error) => {
          onError(error);
          reconnect();
        });
      }, this.#reconnectDelayMillis);
    };

    await connect();
    return {
      close: async () => {
        closed = true;
        if (retry !== undefined) clearTimeout(retry);
        const last = client;
        client = undefined;
        await last?.end().catch(() => undefined);
      },
    };
  }

  /**
   * Runs `fn` holding the catalog's operator lock (a PostgreSQL advisory lock on a session of its
   * own), so two operators never change the topology at once. Fails at once with
   * {@link OperatorBusyError} when another session holds it.
   */
  async withOperatorLock<T>(fn: () => Promise<T>): Promise<T> {
    const client: PoolClient = await this.#pool.connect();
    let locked = false;
    try {
      const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock(hashtext($1)) as locked', [OPERATOR_LOCK_KEY]);
      locked = rows[0]?.locked === true;
      if (!locked) {
        const holder = await client.query<{ pid: number; application_name: string; since: Date | null }>(
          `select a.pid, a.application_name, a.backend_start as since from pg_locks l join pg_stat_activity a using (pid)
           where l.locktype = 'advisory' and l.granted and l.objid = hashtext($1)::oid`,
          [OPERATOR_LOCK_KEY],
        );
        const who = holder.rows[0];
        throw new OperatorBusyError(
          `Another operator is changing the topology${who === undefined ? '' : ` (PostgreSQL backend ${who.pid}, application "${who.application_name}")`}: wait until it finishes.`,
          who === undefined ? {} : { pid: who.pid, applicationName: who.application_name },
        );
      }
      return await fn();
    } finally {
      if (locked) await client.query('select pg_advisory_unlock(hashtext($1))', [OPERATOR_LOCK_KEY]).catch(() => undefined);
      client.release();
    }
  }

  /** Closes the catalog's connections (watches are closed by their own `close()`). */
  close(): Promise<void> {
    return this.#pool.end();
  }
}
