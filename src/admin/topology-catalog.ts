import { Client, Pool, type PoolClient, type QueryResult } from 'pg';
import { ConfigError } from '../kernel/errors';
import { OperatorBusyError, TopologyConflictError } from './admin-errors';
import { TopologyError } from '../cluster/cluster-errors';
import { redactUrl } from '../kernel/redact';
import type { Topology } from '../cluster/topology';
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
  readonly #pool: Pool;
  /** One operator lock per catalog (schema): two slot moves at once could publish over each other. */
  readonly #lockKey: string;
  readonly #schema: string;

  constructor(options: TopologyCatalogOptions) {
    if (typeof options.url !== 'string' || !/^postgres(ql)?:\/\//.test(options.url)) throw new ConfigError('url', 'must be a postgres:// connection URL');
    const schema = options.schema ?? TOPOLOGY_CATALOG_DEFAULTS.schema;
    if (!IDENTIFIER.test(schema)) throw new ConfigError('schema', `must be a lower-case SQL identifier of at most 54 characters; got ${JSON.stringify(schema)}`);
    const reconnectDelayMillis = options.reconnectDelayMillis ?? TOPOLOGY_CATALOG_DEFAULTS.reconnectDelayMillis;
    if (!Number.isInteger(reconnectDelayMillis) || reconnectDelayMillis < 0) throw new ConfigError('reconnectDelayMillis', `must be an integer ≥ 0; got ${String(reconnectDelayMillis)}`);
    this.#url = options.url;
    this.#table = `"${schema}"."topology"`;
    this.#channel = `${schema}_topology`;
    this.#reconnectDelayMillis = reconnectDelayMillis;
    this.#lockKey = `kysely_scale_operator ${schema}`;
    this.#schema = schema;
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
    const client = await this.#pool.connect();
    // One round trip, since the publish is the last step of a move's cutover, when writers of the
    // moved slots wait: a multi-statement simple query (so no bind parameters: the values are
    // inlined as base64, which holds no quote or backslash). The lock serializes publishers, so the
    // version check and the insert, one statement whose snapshot is taken after the lock, see the
    // same latest version; the notification goes out at the commit.
    try {
      const literal = (text: string): string => `convert_from(decode('${Buffer.from(text, 'utf8').toString('base64')}', 'base64'), 'UTF8')`;
      const version = Number(topology.version);
      const results = (await client.query(
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
      await client.query('rollback').catch(() => undefined);
      if (isNotInstalled(error)) {
        throw new TopologyError(`The catalog at ${this.redactedUrl} is not installed: run catalog.install() or \`kysely-scale-admin init\` first.`, { catalog: this.redactedUrl });
      }
      throw error;
    } finally {
      client.release();
    }
  }

  /**
   * Calls `listener` with the latest topology now (if any), then with every newer version once it
   * is published, one at a time and in increasing order of version, none twice. The watch survives
   * lost connections: it reconnects after `reconnectDelayMillis` and delivers every version it
   * missed meanwhile. Errors (lost connections, a listener that threw) go to `onError`; the watch
   * goes on. It fails only when its first connection or load fails, and then leaves nothing open.
   */
  async watch(listener: (topology: Topology) => void, onError: (error: Error) => void = () => undefined): Promise<TopologyWatch> {
    let seen = 0;
    let closed = false;
    let started = false;
    let current: Client | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let queue: Promise<void> = Promise.resolve();
    const report = (error: unknown): void => {
      try {
        onError(error as Error);
      } catch {
        // A reporter that throws must not stop the watch.
      }
    };
    // Deliveries run one after another, so versions arrive in order even when notifications overlap.
    const deliverNewer = (): Promise<void> => {
      const step = queue.then(async () => {
        if (closed) return;
        for (const topology of await this.#newerThan(seen)) {
          if (closed) return;
          seen = topology.version;
          try {
            listener(topology);
          } catch (error) {
            report(error);
          }
        }
      });
      queue = step.catch(() => undefined);
      return step;
    };
    const detach = (client: Client): void => {
      client.removeAllListeners();
      client.on('error', () => undefined);
      void client.end().catch(() => undefined);
    };
    const lost = (client: Client, error: Error): void => {
      if (client !== current || !started || closed) return; // the first connection's failure is watch()'s own error
      current = undefined;
      report(error);
      detach(client);
      scheduleReconnect();
    };
    const connect = async (): Promise<void> => {
      const next = new Client({ connectionString: this.#url, application_name: `kysely-scale catalog watch (${this.#schema})`, keepAlive: true });
      current = next;
      next.on('error', (error) => lost(next, error));
      next.on('end', () => lost(next, new Error('the catalog connection ended')));
      next.on('notification', () => void deliverNewer().catch(report));
      try {
        await next.connect();
        await next.query(`listen "${this.#channel}"`);
        await deliverNewer(); // versions published while we were not listening
      } catch (error) {
        if (current === next) current = undefined;
        detach(next);
        throw error;
      }
      if (closed) {
        // close() ran while this connection was being made.
        current = undefined;
        detach(next);
      }
    };
    const scheduleReconnect = (): void => {
      if (closed || retry !== undefined) return;
      retry = setTimeout(() => {
        retry = undefined;
        connect().catch((error: unknown) => {
          if (closed) return;
          report(error);
          scheduleReconnect();
        });
      }, this.#reconnectDelayMillis);
      retry.unref();
    };

    await connect();
    started = true;
    return {
      close: async () => {
        closed = true;
        if (retry !== undefined) clearTimeout(retry);
        retry = undefined;
        const last = current;
        current = undefined;
        if (last !== undefined) detach(last);
        await queue;
      },
    };
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
  async #query<R extends object>(sql: string, values: unknown[] = []): Promise<QueryResult<R>> {
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
    const client: PoolClient = await this.#pool.connect();
    const lost = new AbortController();
    // pg-pool does not listen on checked-out clients: a dropped session would otherwise crash the process.
    const onError = (error: Error): void => lost.abort(error);
    client.on('error', onError);
    let locked = false;
    let broken = false;
    try {
      const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock(hashtext($1)) as locked', [this.#lockKey]);
      locked = rows[0]?.locked === true;
      if (!locked) {
        const holder = await client.query<{ pid: number; application_name: string }>(
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
        await client.query('select pg_advisory_unlock(hashtext($1))', [this.#lockKey]).catch(() => {
          broken = true; // never hand a session that may still hold the lock back to the pool
        });
      }
      client.off('error', onError);
      client.release(broken || lost.signal.aborted);
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
