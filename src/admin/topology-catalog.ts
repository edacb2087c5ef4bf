import type { QueryResult, QueryResultRow } from 'pg';
import { mathRandom, systemClock, type Clock, type RandomSource } from '../kernel/clock';
import { ConfigError } from '../kernel/errors';
import { requireInteger } from '../kernel/validate';
import { TopologyError } from '../cluster/cluster-errors';
import { redactUrl } from '../kernel/redact';
import type { Topology } from '../cluster/topology';
import { fromDocument, toDocument } from './topology-document';
import { CATALOG_DEADLINE_DEFAULTS, CatalogPool, catalogDeadlines, type CatalogDeadlines } from './catalog-connections';
import { holdOperatorLock, type OperatorLockBody, type ServerProcess } from './operator-lock';
import { startWatch, type TopologyWatch } from './catalog-watch';
import { publishOn, type PublishPrecondition } from './topology-catalog-publish';

export type { TopologyWatch } from './catalog-watch';
export type { OperatorEpoch, OperatorLockBody } from './operator-lock';
export { PublishOutcomeUnknownError, type PublishPrecondition } from './topology-catalog-publish';

/**
 * Options of {@link TopologyCatalog}. Every wait on the catalog has a deadline: connecting
 * (`connectionTimeoutMillis`), each statement (`statementTimeoutMillis`), a watch's heartbeat; a
 * catalog that does not answer in time fails the call with a `CatalogTimeoutError` (`code`
 * `E_CATALOG_UNAVAILABLE`) naming it, its password redacted.
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
  /**
   * Schedules a watch's heartbeats and reconnect waits. The deadlines of connections and
   * statements run on real time whatever the clock, so a test's `ManualClock` never holds a call.
   * @default systemClock
   */
  clock?: Clock;
  /** Shortens each reconnect wait by a random part of up to half. @default Math.random */
  random?: RandomSource;
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
// The application name of the catalog's pooled sessions (a lost publish's server process is found by it).
const APPLICATION_NAME = 'kysely-scale catalog';

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
  /** The sequence the operator lock's epochs come from. */
  readonly #epochSequence: string;
  readonly #channel: string;
  readonly #reconnectDelayMillis: number;
  readonly #maxReconnectDelayMillis: number;
  readonly #heartbeatIntervalMillis: number;
  readonly #deadlines: Required<CatalogDeadlines>;
  readonly #clock: Clock;
  readonly #random: RandomSource;
  readonly #pool: CatalogPool;
  /** One operator lock per catalog (schema): two slot moves at once could publish over each other. */
  readonly #lockKey: string;
  readonly #schema: string;
  /** Server processes of this catalog's dropped lock sessions that may still hold the lock at the server. */
  readonly #orphanedLockSessions = new Map<string, ServerProcess>();

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
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? mathRandom;
    this.#maxReconnectDelayMillis = maxReconnectDelayMillis;
    this.#url = options.url;
    this.#table = `"${schema}"."topology"`;
    this.#epochSequence = `"${schema}"."operator_epoch"`;
    this.#channel = `${schema}_topology`;
    this.#reconnectDelayMillis = reconnectDelayMillis;
    this.#lockKey = `kysely_scale_operator ${schema}`;
    this.#schema = schema;
    this.#pool = new CatalogPool(options.url, this.#deadlines, APPLICATION_NAME);
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
      `create sequence if not exists ${this.#epochSequence}`,
    ];
    for (const sql of statements) {
      // Two installs at once can both pass "if not exists" and collide in the catalog (23505): the other one made it.
      await this.#pool.query(sql).catch((error: unknown) => {
        if (!['23505', '42P07'].includes(String((error as { code?: unknown }).code))) throw error;
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
    const { rows } = await this.#query<DocumentRow>(`select version, document from ${this.#table} order by version desc limit 1`);
    return rows[0] === undefined ? undefined : topologyOf(rows[0]);
  }

  /**
   * The topology published as `version`, or `undefined` when the catalog holds no such version
   * (not published yet, or a publish that did not commit): to see what an older version routed,
   * or whether a publish whose outcome was unknown ({@link PublishOutcomeUnknownError}) holds it.
   */
  async version(version: number): Promise<Topology | undefined> {
    requireInteger('version', version, 1, MAX_VERSION);
    const { rows } = await this.#query<DocumentRow>(`select version, document from ${this.#table} where version = $1`, [version]);
    return rows[0] === undefined ? undefined : topologyOf(rows[0]);
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
   * Publishes `topology` as the newest version and notifies every watcher, in one round trip. It
   * must be newer than the latest version, else {@link TopologyConflictError} (nothing is
   * written): another operator published meanwhile, so reload and plan again.
   *
   * A publish whose answer does not come (no answer within `statementTimeoutMillis` + 500 ms, or
   * its connection broke after it was sent) may have committed, or may still commit once bytes
   * held on the wire or by a frozen server arrive. Before it reports anything, a fresh connection
   * (within `connectionTimeoutMillis` + `statementTimeoutMillis`) ends the publish's server process
   * (`pg_terminate_backend`, after which it can never commit), waits until it is gone, and reads
   * the version:
   * - committed: `publish` returns, as for any publish;
   * - not in the catalog: it never will be; `publish` fails with a `CatalogTimeoutError` (or the
   *   connection's error), retryable, nothing published;
   * - another topology holds the version: {@link TopologyConflictError};
   * - the catalog could not be asked, or a connection pooler hides the process:
   *   {@link PublishOutcomeUnknownError} (`outcomeUnknown: true`, code `E_CATALOG_UNAVAILABLE`):
   *   the version may be published now or later; act on neither outcome (see the class).
   *
   * With a `precondition`, the version is published only if it holds at the publish (checked in the
   * publish's transaction), else `precondition.refused()` is thrown and nothing is published.
   */
  async publish(topology: Topology, note?: string, precondition?: PublishPrecondition): Promise<void> {
    if (topology.version > MAX_VERSION) throw new TopologyError(`Topology version ${topology.version} is beyond the catalog's largest version ${MAX_VERSION}.`);
    const session = await this.#pool.connect();
    const target = { url: this.#url, catalog: this.redactedUrl, table: this.#table, channel: this.#channel, applicationName: APPLICATION_NAME, deadlines: this.#deadlines };
    try {
      await publishOn(session, target, { version: Number(topology.version), document: JSON.stringify(toDocument(topology)), note }, precondition);
    } catch (error) {
      if (isNotInstalled(error)) {
        throw new TopologyError(`The catalog at ${this.redactedUrl} is not installed: run catalog.install() or \`kysely-scale-admin init\` first.`, { catalog: this.redactedUrl });
      }
      throw error;
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
        clock: this.#clock,
        random: this.#random,
        newerThan: (version) => this.#newerThan(version),
      },
      listener,
      onError,
    );
  }

  /** Published topologies newer than `version`, oldest first. */
  async #newerThan(version: number): Promise<Topology[]> {
    const { rows } = await this.#query<DocumentRow>(`select version, document from ${this.#table} where version > $1 order by version`, [version]);
    return rows.map(topologyOf);
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
   * `fn` runs, the lock is gone: `lost` is aborted, and `fn` should stop before publishing. The
   * session is checked every `heartbeatIntervalMillis` (`select 1` under the statement deadline), so
   * a path to the catalog that went silent (a catalog host that died or failed over, whose server
   * let the lock go while no packet came back) aborts `lost` too, rather than only a connection
   * that closes. `confirm()` proves the lock held at that moment (see {@link OperatorLockBody}), and
   * `epoch` gives the command's fencing token on demand (`epoch.draw()`): drawn from the catalog's
   * sequence `operator_epoch` on the lock's own session, so every later holder that draws has a
   * larger one (the slot mover's shards refuse changes of an older one: `mover/mover-epoch.ts`);
   * a command that never draws never touches the sequence. A
   * lock session dropped after it asked for the lock, whose server process may live on holding it
   * (a silent path), is ended when `fn` ends and when this catalog asks for the lock again, if the
   * catalog answers then and the connection is direct (see operator-lock.ts).
   */
  withOperatorLock<T>(fn: OperatorLockBody<T>): Promise<T> {
    return holdOperatorLock(
      {
        pool: this.#pool,
        key: this.#lockKey,
        applicationName: APPLICATION_NAME,
        heartbeatIntervalMillis: this.#heartbeatIntervalMillis,
        statementTimeoutMillis: this.#deadlines.statementTimeoutMillis,
        clock: this.#clock,
        orphans: this.#orphanedLockSessions,
        epochSequence: this.#epochSequence,
      },
      fn,
    );
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

/** A row of the topology table, as the readers select it. */
interface DocumentRow {
  readonly version: number;
  readonly document: unknown;
}

/** The topology a row holds; a document whose version is not its row's is a {@link TopologyError}. */
function topologyOf(row: DocumentRow): Topology {
  const topology = fromDocument(row.document);
  if (topology.version !== row.version) throw new TopologyError(`The catalog's row for version ${row.version} holds a document of version ${topology.version}.`);
  return topology;
}
