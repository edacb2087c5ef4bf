import type { QueryResult, QueryResultRow } from 'pg';
import { ConfigError } from '../kernel/errors';
import { requireInteger } from '../kernel/validate';
import { OperatorBusyError, TopologyConflictError } from './admin-errors';
import { TopologyError } from '../cluster/cluster-errors';
import { redactUrl } from '../kernel/redact';
import type { Topology } from '../cluster/topology';
import { fromDocument, toDocument } from './topology-document';
import { CATALOG_DEADLINE_DEFAULTS, CatalogPool, catalogDeadlines, type CatalogDeadlines, type CatalogSession } from './catalog-connections';
import { startWatch, type TopologyWatch } from './catalog-watch';

export type { TopologyWatch } from './catalog-watch';

/**
 * Options of {@link TopologyCatalog}. Every wait on the catalog has a deadline: connecting
 * (`connectionTimeoutMillis`), each statement (`statementTimeoutMillis`), a watch's heartbeat; a
 * catalog that does not answer in time fails the call with a `CatalogTimeoutError` (`code`
 * `ETIMEDOUT`) naming it, its password redacted.
 */
export interface TopologyCatalogOptions extends CatalogDeadlines {
  /** Connection URL of the catalog database (any PostgreSQL database every instance can reach). */
  url: string;
  /** Schema holding the catalog's table. @default 'kysely_scale' */
  schema?: string;
  /** Wait before a watch's first reconnect attempt (then doubled per failed attempt, up to `maxReconnectDelayMillis`; each wait randomly shortened by up to half). @default 1000 */
  reconnectDelayMillis?: number;
  /** Longest wait between a watch's reconnect attempts. @default 30000 */
  maxReconnectDelayMillis?: number;
  /** How often a watch proves its connection alive (`select 1`, under `statementTimeoutMillis`); one that does not answer is dropped and reconnected. @default 10000 */
  heartbeatIntervalMillis?: number;
}

/** Defaults of {@link TopologyCatalogOptions}. */
export const TOPOLOGY_CATALOG_DEFAULTS = Object.freeze({
  schema: 'kysely_scale',
  reconnectDelayMillis: 1000,
  maxReconnectDelayMillis: 30_000,
  heartbeatIntervalMillis: 10_000,
  ...CATALOG_DEADLINE_DEFAULTS,
});

/** One published version, as {@link TopologyCatalog.history} lists it. */
export interface PublishedTopology {
  readonly version: number;
  readonly publishedAt: Date;
  readonly note: string | null;
}

// At most 54 characters: the NOTIFY channel `<schema>_topology` must stay under PostgreSQL's 64.
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,53}$/;
// The largest version the catalog's integer column holds.
const MAX_VERSION = 2 ** 31 - 1;

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
  readonly #maxReconnectDelayMillis: number;
  readonly #heartbeatIntervalMillis: number;
  readonly #deadlines: Required<CatalogDeadlines>;
  readonly #pool: CatalogPool;
  /** One operator lock per catalog (schema): two slot moves at once could publish over each other. */
  readonly #lockKey: string;
  readonly #schema: string;

  constructor(options: TopologyCatalogOptions) {
    if (typeof options.url !== 'string' || !/^postgres(ql)?:\/\//.test(options.url)) throw new ConfigError('url', 'must be a postgres:// connection URL');
    const schema = options.schema ?? TOPOLOGY_CATALOG_DEFAULTS.schema;
    if (!IDENTIFIER.test(schema)) throw new ConfigError('schema', `must be a lower-case SQL identifier of at most 54 characters; got ${JSON.stringify(schema)}`);
    const reconnectDelayMillis = options.reconnectDelayMillis ?? TOPOLOGY_CATALOG_DEFAULTS.reconnectDelayMillis;
    if (!Number.isInteger(reconnectDelayMillis) || reconnectDelayMillis < 0) throw new ConfigError('reconnectDelayMillis', `must be an integer ≥ 0; got ${String(reconnectDelayMillis)}`);
    const maxReconnectDelayMillis = options.maxReconnectDelayMillis ?? Math.max(reconnectDelayMillis, TOPOLOGY_CATALOG_DEFAULTS.maxReconnectDelayMillis);
    requireInteger('maxReconnectDelayMillis', maxReconnectDelayMillis, reconnectDelayMillis);
    this.#heartbeatIntervalMillis = requireInteger('heartbeatIntervalMillis', options.heartbeatIntervalMillis ?? TOPOLOGY_CATALOG_DEFAULTS.heartbeatIntervalMillis, 1);
    this.#deadlines = catalogDeadlines(options);
    this.#maxReconnectDelayMillis = maxReconnectDelayMillis;
    this.#url = options.url;
    this.#table = `"${schema}"."topology"`;
    this.#channel = `${schema}_topology`;
    this.#reconnectDelayMillis = reconnectDelayMillis;
    this.#lockKey = `kysely_scale_operator ${schema}`;
    this.#schema = schema;
    this.#pool = new CatalogPool(options.url, this.#deadlines, 'kysely-scale catalog');
  }

  /** The catalog database's URL with its password redacted. */
  get redactedUrl(): string {
    return redactUrl(this.#url);
  }

  /** Creates the catalog's schema and table if missing (idempotent). */
  async install(): Promise<void> {
    const schema = this.#table.split('.')[0]!;
    const statements = [
      `create schema if not exists ${schema}`,
      `create table if not exists ${this.#table} (version integer primary key check (version > 0), document jsonb not null, note text, published_at timestamptz not null default now())`,
    ];
    for (const sql of statements) {
      // Two installs at once can both pass "if not exists" and collide in the catalog (23505): the other one made it.
      await this.#pool.query(sql).catch((error: unknown) => {
        if ((error as { code?: unknown }).code !== '23505') throw error;
      });
    }
  }

  /** Whether the catalog's table exists ({@link install} creates it). */
  async installed(): Promise<boolean> {
    const { rows } = await this.#pool.query<{ exists: boolean }>('select to_regclass($1) is not null as exists', [this.#table]);
    return rows[0]?.exists === true;
  }

  /** The newest published topology, or `undefined` when none was published. */
  async latest(): Promise<Topology | undefined> {
    const { rows } = await this.#query<{ version: number; document: unknown }>(`select version, document from ${this.#table} order by version desc limit 1`);
    const row = rows[0];
    if (row === undefined) return undefined;
    const topology = fromDocument(row.document);
    if (topology.version !== row.version) throw new TopologyError(`The catalog's row for version ${row.version} holds a document of version ${topology.version}.`);
    return topology;
  }

  /** Published versions, newest first. */
  async history(limit = 20): Promise<PublishedTopology[]> {
    const { rows } = await this.#query<{ version: number; published_at: Date; note: string | null }>(
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
    if (topology.version > MAX_VERSION) throw new TopologyError(`Topology version ${topology.version} is beyond the catalog's largest version ${MAX_VERSION}.`);
    const session = await this.#pool.connect();
    let broken = false;
    // One round trip, since the publish is the last step of a move's cutover, when writers of the
    // moved slots wait: a multi-statement simple query (so no bind parameters: the values are
    // inlined as base64, which holds no quote or backslash). The lock serializes publishers, so the
    // version check and the insert, one statement whose snapshot is taken after the lock, see the
    // same latest version; the notification goes out at the commit.
    try {
      const literal = (text: string): string => `convert_from(decode('${Buffer.from(text, 'utf8').toString('base64')}', 'base64'), 'UTF8')`;
      const version = Number(topology.version);
      const results = (await session.query(
        `begin; lock table ${this.#table} in exclusive mode;
         with latest as (select coalesce(max(version), 0) as version from ${this.#table}),
           inserted as (insert into ${this.#table} (version, document, note)
             select ${version}, ${literal(JSON.stringify(toDocument(topology)))}::jsonb, ${note === undefined ? 'null' : literal(note)} from latest where latest.version < ${version} returning version)
         select (select version from latest) as latest, (select count(pg_notify(${literal(this.#channel)}, version::text))::int from inserted) as inserted;
         commit`,
      )) as unknown as { rows: { latest: number; inserted: number }[] }[];
      const rows = results[2]?.rows ?? [];
      const latest = rows[0]?.latest ?? 0;
      if (Number(rows[0]?.inserted) !== 1) {
        throw new TopologyConflictError(`Topology version ${topology.version} is not newer than the catalog's version ${latest}: reload the latest, apply your change to it and publish again.`, {
          latest,
          attempted: topology.version,
        });
      }
    } catch (error) {
      await session.query('rollback').catch(() => {
        broken = true; // a session that did not roll back (a catalog that stopped answering) is not reused
      });
      if (isNotInstalled(error)) {
        throw new TopologyError(`The catalog at ${this.redactedUrl} is not installed: run catalog.install() or \`kysely-scale-admin init\` first.`, { catalog: this.redactedUrl });
      }
      throw error;
    } finally {
      session.release(broken);
    }
  }

  /**
   * Calls `listener` with the latest topology now (if any), then with every newer version once it
   * is published, one at a time and in increasing order of version, none twice. The watch survives
   * lost connections and a catalog that stops answering (a heartbeat every
   * `heartbeatIntervalMillis` proves its connection alive): it reconnects after
   * `reconnectDelayMillis`, doubling the wait after each failed attempt up to
   * `maxReconnectDelayMillis`, and delivers every version it missed meanwhile. Errors (lost
   * connections, failed attempts, a listener that threw) go to `onError`; the watch goes on. It
   * fails only when its first connection or load fails, and then leaves nothing open.
   */
  watch(listener: (topology: Topology) => void, onError: (error: Error) => void = () => undefined): Promise<TopologyWatch> {
    return startWatch(
      {
        url: this.#url,
        channel: this.#channel,
        applicationName: `kysely-scale catalog watch (${this.#schema})`,
        deadlines: this.#deadlines,
        heartbeatIntervalMillis: this.#heartbeatIntervalMillis,
        reconnectDelayMillis: this.#reconnectDelayMillis,
        maxReconnectDelayMillis: this.#maxReconnectDelayMillis,
        newerThan: (version) => this.#newerThan(version),
      },
      listener,
      onError,
    );
  }

  /** Published topologies newer than `version`, oldest first. */
  async #newerThan(version: number): Promise<Topology[]> {
    const { rows } = await this.#query<{ version: number; document: unknown }>(`select version, document from ${this.#table} where version > $1 order by version`, [version]);
    return rows.map((row) => {
      const topology = fromDocument(row.document);
      if (topology.version !== row.version) throw new TopologyError(`The catalog's row for version ${row.version} holds a document of version ${topology.version}.`);
      return topology;
    });
  }

  /** Runs a catalog query; a catalog that was never installed is reported as such. */
  async #query<R extends QueryResultRow>(sql: string, values: unknown[] = []): Promise<QueryResult<R>> {
    try {
      return await this.#pool.query<R>(sql, values);
    } catch (error) {
      if (isNotInstalled(error)) {
        throw new TopologyError(`The catalog at ${this.redactedUrl} is not installed: run catalog.install() or \`kysely-scale-admin init\` first.`, { catalog: this.redactedUrl });
      }
      throw error;
    }
  }

  /**
   * Runs `fn` holding the catalog's operator lock (a PostgreSQL advisory lock on a session of its
   * own), so two operators never change the topology at once. Fails at once with
   * {@link OperatorBusyError} when another session holds it. If the lock's session is lost while
   * `fn` runs, the lock is gone: `lost` is aborted, and `fn` should stop before publishing.
   */
  async withOperatorLock<T>(fn: (lost: AbortSignal) => Promise<T>): Promise<T> {
    const session: CatalogSession = await this.#pool.connect();
    const { client } = session;
    const lost = new AbortController();
    // pg-pool does not listen on checked-out clients: a dropped session would otherwise crash the process.
    const onError = (error: Error): void => lost.abort(error);
    client.on('error', onError);
    let locked = false;
    let broken = true; // until the lock was asked for: a session whose statement failed is not reused
    try {
      const { rows } = await session.query<{ locked: boolean }>('select pg_try_advisory_lock(hashtext($1)) as locked', [this.#lockKey]);
      locked = rows[0]?.locked === true;
      broken = false;
      if (!locked) {
        const holder = await session.query<{ pid: number; application_name: string }>(
          `select a.pid, a.application_name from pg_locks l join pg_stat_activity a using (pid)
           where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database where datname = current_database())
             and l.objsubid = 1 and l.objid = (hashtext($1)::bigint & 4294967295)::oid`,
          [this.#lockKey],
        );
        const who = holder.rows[0];
        throw new OperatorBusyError(
          `Another operator is changing the topology${who === undefined ? '' : ` (PostgreSQL backend ${who.pid}, application "${who.application_name}")`}: wait until it finishes.`,
          who === undefined ? {} : { pid: who.pid, applicationName: who.application_name },
        );
      }
      return await fn(lost.signal);
    } finally {
      if (locked) {
        await session.query('select pg_advisory_unlock(hashtext($1))', [this.#lockKey]).catch(() => {
          broken = true; // never hand a session that may still hold the lock back to the pool
        });
      }
      client.off('error', onError);
      session.release(broken || lost.signal.aborted);
    }
  }

  /** Closes the catalog's connections (watches are closed by their own `close()`). */
  close(): Promise<void> {
    return this.#pool.end();
  }
}

/** The catalog's table (42P01) or its schema (3F000: `lock table` names the schema first) does not exist. */
function isNotInstalled(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '42P01' || code === '3F000';
}
