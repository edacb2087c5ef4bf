/**
 * Kysely migrations on every shard: Kysely's own `Migrator` runs on each shard's primary in turn,
 * each shard keeping its own migration table, so a shard is migrated exactly as a single database
 * would be. The run stops at the first shard that fails and reports where every shard stands.
 * Every statement on a shard runs under the mover's client-side deadline (`mover/shard-deadlines.ts`):
 * a shard that stops answering (frozen, a dropped path) fails the shard instead of holding the run.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, sql, type MigrationProvider, type MigrationResult, type MigratorProps, type NoMigrations } from 'kysely';
import { Pool, type Client, type ClientBase } from 'pg';
import { SLOT_FUNCTIONS_SQL } from '../cluster/slot-function-sql';
import type { Topology } from '../cluster/topology';
import { ConfigError } from '../kernel/errors';
import { DeadlineError, withDeadline } from '../kernel/deadline';
import { redactText, redactUrl } from '../kernel/redact';
import { destroySocket, isServerFailure, nameServer } from './server-client';
import { ShardLockError, ShardSilentError } from './mover/mover-errors';
import { learnBackendPid, registerShardSession, SHARD_DEADLINE_DEFAULTS } from './mover/shard-deadlines';
import { withOwnLockTimeout } from './mover/shard-queries';

/** A shard to migrate: its id and its primary's URL. */
export interface ShardTarget {
  readonly id: string;
  readonly url: string;
}

/** Where Kysely keeps its migration bookkeeping on each shard (as in Kysely's `MigratorProps`). */
export type MigrationTableOptions = Pick<MigratorProps, 'migrationTableName' | 'migrationLockTableName' | 'migrationTableSchema'>;

/** Options of {@link migrateShards}. */
export interface MigrateShardsOptions extends MigrationTableOptions, Pick<MigratorProps, 'allowUnorderedMigrations' | 'disableTransactions'> {
  /** The shards, in the order they are migrated: a topology (its primaries) or a list. */
  shards: Topology | readonly ShardTarget[];
  /** The migrations: a Kysely `MigrationProvider`, or give `migrationFolder`. */
  provider?: MigrationProvider;
  /** A folder of migration files, read with Kysely's `FileMigrationProvider` (`.js`; `.ts` when a TypeScript loader such as tsx runs). */
  migrationFolder?: string;
  /** Migrate up or down to this migration (Kysely's `migrateTo`), or `NO_MIGRATIONS`. @default the latest */
  to?: string | NoMigrations;
  /** Install the slot SQL functions (`kysely_scale_slot`, contract 5) on each shard first, so migrations may use them. @default true */
  installSlotFunctions?: boolean;
  /** Wait for a connection to a shard. @default 10000 */
  connectionTimeoutMillis?: number;
  /**
   * A statement without an answer for this long has its shard probed from another connection
   * (`pg_stat_activity`, as the slot mover does): a backend at work is let finish however long it
   * takes (a `CREATE INDEX` on a big table); a shard that does not answer the probe either
   * (frozen, overloaded, unreachable) or whose backend is idle or gone (the path to it dropped)
   * fails the shard with `ShardSilentError` (`E_MOVE_FAILED`), its connection dropped, so its
   * migrations of the run roll back. A statement waiting for a lock longer than the mover's lock
   * bound (5 s) fails it with `ShardLockError` naming who keeps the lock, so a migration's
   * `ALTER TABLE` does not queue the app's statements behind a long transaction; the wait for
   * Kysely's own migration lock (another `migrate` running) is left to Kysely's `lock_timeout`.
   * No server-side `statement_timeout` is set. CLI: `--statement-timeout-ms`.
   * @default 30000 (the mover's `statementTimeoutMillis`)
   */
  statementTimeoutMillis?: number;
  /** Called after each shard, e.g. to print progress. */
  onShard?: (result: ShardMigrationResult) => void;
}

/** Defaults of {@link MigrateShardsOptions}. */
export const MIGRATE_SHARDS_DEFAULTS = Object.freeze({ installSlotFunctions: true, connectionTimeoutMillis: 10_000, statementTimeoutMillis: SHARD_DEADLINE_DEFAULTS.statementTimeoutMillis });

/** What happened on one shard. */
export interface ShardMigrationResult {
  readonly shardId: string;
  /** The shard primary's URL, password redacted. */
  readonly server: string;
  /** `migrated`: the run succeeded (perhaps with nothing to do); `failed`: see `error`; `skipped`: not run, an earlier shard failed. */
  readonly status: 'migrated' | 'failed' | 'skipped';
  /** Kysely's result of each migration the run meant to execute on this shard (absent when skipped or when it failed before planning). */
  readonly results?: readonly MigrationResult[];
  /**
   * Why this shard failed. Kysely's and pg's errors as they are (SQLSTATE fields kept); a server that
   * cannot be reached is named in the message; a shard that stopped answering a statement, or a
   * lock waited for too long: `ShardSilentError` / `ShardLockError` (`E_MOVE_FAILED`, `context.shard`).
   */
  readonly error?: unknown;
  /** The last migration executed on the shard after the run; null for none; undefined when it could not be read. */
  readonly current: string | null | undefined;
  /** Migrations the provider has that this shard has not executed (after the run). */
  readonly pending: readonly string[];
}

/** The outcome of {@link migrateShards}; like Kysely's `MigrationResultSet`, it is returned, never thrown. */
export interface ShardMigrationResultSet {
  /** The first failure (also on its shard's result), or an invalid option; undefined when every shard migrated. */
  readonly error?: unknown;
  /** The shard that failed, if any. */
  readonly failedShard?: string;
  /** One result per shard, in order. */
  readonly shards: readonly ShardMigrationResult[];
}

function shardTargets(shards: Topology | readonly ShardTarget[]): readonly ShardTarget[] {
  if (Array.isArray(shards)) return shards;
  return (shards as Topology).shards.map((s) => ({ id: s.id, url: s.primary.url }));
}

function validate(options: MigrateShardsOptions): { targets: readonly ShardTarget[]; provider: MigrationProvider } {
  if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'must be an object');
  if (options.shards === undefined || options.shards === null) throw new ConfigError('shards', 'must be a topology or a list of { id, url }');
  const targets = shardTargets(options.shards);
  if (targets.length === 0) throw new ConfigError('shards', 'must list at least one shard');
  for (const t of targets) {
    if (typeof t?.id !== 'string' || typeof t.url !== 'string' || !/^postgres(ql)?:\/\//.test(t.url)) throw new ConfigError('shards', 'must be { id, url: postgres://… } entries');
  }
  if (new Set(targets.map((t) => t.id)).size !== targets.length) throw new ConfigError('shards', 'lists a shard id twice');
  if ((options.provider === undefined) === (options.migrationFolder === undefined)) throw new ConfigError('provider', 'give either `provider` or `migrationFolder`');
  for (const name of ['connectionTimeoutMillis', 'statementTimeoutMillis'] as const) {
    const value = options[name];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) throw new ConfigError(name, 'must be a whole number of milliseconds ≥ 1');
  }
  const provider = options.provider ?? new FileMigrationProvider({ fs, path, migrationFolder: path.resolve(options.migrationFolder!) });
  return { targets, provider };
}

/** Last executed migration and the pending ones, from Kysely's own bookkeeping. */
async function standing(migrator: Migrator): Promise<{ current: string | null; pending: string[] }> {
  const migrations = await migrator.getMigrations();
  const executed = migrations.filter((m) => m.executedAt !== undefined);
  return { current: executed[executed.length - 1]?.name ?? null, pending: migrations.filter((m) => m.executedAt === undefined).map((m) => m.name) };
}

/**
 * Runs Kysely's `Migrator` on each shard's primary, one shard after another, and stops at the
 * first failure: later shards are left as they were and reported `skipped`, with where they
 * stand. Before migrating, it installs the slot SQL functions on the shard (idempotent). Kysely
 * runs a shard's pending migrations in one transaction on PostgreSQL, so a failed shard stays
 * where it was before the run; run again after fixing the cause.
 *
 * Never throws: like Kysely's `MigrationResultSet`, the outcome (and any error) is in the result.
 *
 * @example
 * ```ts
 * const { error, shards } = await migrateShards({ shards: topology, migrationFolder: 'migrations' });
 * for (const s of shards) console.log(s.shardId, s.status, s.current);
 * if (error) process.exitCode = 1;
 * ```
 */
export async function migrateShards(options: MigrateShardsOptions): Promise<ShardMigrationResultSet> {
  let targets: readonly ShardTarget[];
  let provider: MigrationProvider;
  try {
    ({ targets, provider } = validate(options));
  } catch (error) {
    return Object.freeze({ error, shards: Object.freeze([]) });
  }
  const results: ShardMigrationResult[] = [];
  let failure: { error: unknown; shard: string } | undefined;
  for (const target of targets) {
    const result = await migrateOne(target, provider, options, failure !== undefined);
    results.push(result);
    if (result.status === 'failed' && failure === undefined) failure = { error: result.error, shard: target.id };
    try {
      options.onShard?.(result);
    } catch {
      // A progress printer that throws must not stop the run.
    }
  }
  return Object.freeze({
    ...(failure === undefined ? {} : { error: failure.error, failedShard: failure.shard }),
    shards: Object.freeze(results),
  });
}

async function migrateOne(target: ShardTarget, provider: MigrationProvider, options: MigrateShardsOptions, skip: boolean): Promise<ShardMigrationResult> {
  const connectMillis = options.connectionTimeoutMillis ?? MIGRATE_SHARDS_DEFAULTS.connectionTimeoutMillis;
  const sessions = deadlineSessions(target, options.statementTimeoutMillis ?? MIGRATE_SHARDS_DEFAULTS.statementTimeoutMillis, connectMillis);
  const pool = new Pool({
    connectionString: target.url,
    max: 2,
    connectionTimeoutMillis: connectMillis,
    application_name: 'kysely-scale migrate',
    onConnect: sessions.onConnect,
  });
  pool.on('error', () => undefined); // an idle connection that drops is replaced on the next checkout
  // Migrator takes a Kysely of any schema.
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
  const migrator = new Migrator({
    db,
    provider,
    ...(options.migrationTableName === undefined ? {} : { migrationTableName: options.migrationTableName }),
    ...(options.migrationLockTableName === undefined ? {} : { migrationLockTableName: options.migrationLockTableName }),
    ...(options.migrationTableSchema === undefined ? {} : { migrationTableSchema: options.migrationTableSchema }),
    ...(options.allowUnorderedMigrations === undefined ? {} : { allowUnorderedMigrations: options.allowUnorderedMigrations }),
    ...(options.disableTransactions === undefined ? {} : { disableTransactions: options.disableTransactions }),
  });
  const base = { shardId: target.id, server: redactUrl(target.url) };
  // A statement that failed its deadline is why the shard failed, not what failed after (the rollback, the lock's release on the dropped connection).
  const named = (error: unknown): unknown => sessions.failure() ?? (isServerFailure(error) || error instanceof DeadlineError ? nameServer(error, `${target.id} primary`, target.url) : error);
  // Where the shard stands, read after the run (a failed run rolls back); undefined if that fails too.
  const readStanding = (): Promise<{ current: string | null | undefined; pending: string[] }> =>
    standing(migrator).catch(() => ({ current: undefined, pending: [] }));
  try {
    if (skip) {
      return Object.freeze({ ...base, status: 'skipped' as const, ...(await readStanding()) });
    }
    try {
      if (options.installSlotFunctions ?? MIGRATE_SHARDS_DEFAULTS.installSlotFunctions) await sql.raw(SLOT_FUNCTIONS_SQL).execute(db);
    } catch (error) {
      return Object.freeze({ ...base, status: 'failed' as const, error: named(error), ...(await readStanding()) });
    }
    const run = options.to === undefined ? await migrator.migrateToLatest() : await migrator.migrateTo(options.to);
    const after = await readStanding();
    return Object.freeze({
      ...base,
      status: run.error === undefined ? ('migrated' as const) : ('failed' as const),
      ...(run.results === undefined ? {} : { results: Object.freeze([...run.results]) }),
      ...(run.error === undefined ? {} : { error: named(run.error) }),
      ...after,
    });
  } finally {
    // A goodbye a frozen server never takes: past the deadline the sockets go (the server ends the backends either way).
    await withDeadline(db.destroy(), CLOSE_MILLIS, 'closing the migration connections', { onLate: sessions.destroyAll }).catch(() => undefined);
  }
}

/** How long closing a shard's connections may take before their sockets are dropped. */
const CLOSE_MILLIS = 1000;

/** Kysely's migration lock statement (`PostgresAdapter.acquireMigrationLock`, 0.28.18+): it bounds its own lock wait with `set_config('lock_timeout', …)`. */
const OWN_LOCK_TIMEOUT = /set_config\('lock_timeout',\s*'(\d+)'/;
/** The same before 0.28.18 (`select pg_advisory_xact_lock(…)`, no lock_timeout): Kysely waits for the lock as long as it takes. */
const MIGRATION_LOCK = /^\s*select\s+pg_advisory(_xact)?_lock\(/i;

/** Kysely's statements after a failure that a connection dropped for a deadline has done by going: its rollback, its migration lock's release. */
const GONE_WITH_THE_SESSION = /^\s*rollback\s*$|pg_advisory_unlock\(/i;

/**
 * The deadlines of a shard's migration connections: each pooled connection, before Kysely gets it,
 * is registered as a shard session of the mover's (`shard-deadlines.ts`: every statement under
 * `statementTimeoutMillis`, probed when late) and its backend pid learnt (what the probe asks about).
 * None of the mover's session settings (`kysely_scale.bypass`) apply. `failure()` is the first
 * deadline error, its message worded for migrations.
 */
function deadlineSessions(target: ShardTarget, statementTimeoutMillis: number, connectMillis: number) {
  const clients = new Set<Client>();
  let failure: ShardSilentError | ShardLockError | undefined;
  const record = (error: unknown): void => {
    if (failure === undefined && (error instanceof ShardSilentError || error instanceof ShardLockError)) failure = forMigrations(error, target.url);
  };
  const onConnect = async (pooled: ClientBase): Promise<void> => {
    const client = pooled as unknown as Client;
    client.on('error', () => undefined); // a checked-out one's statement fails with the error
    clients.add(client);
    const ended = new Promise<void>((resolve) => client.once('end', resolve)).then(() => void clients.delete(client));
    registerShardSession(client, { shard: target.id, url: target.url, deadlines: { statementTimeoutMillis } });
    const guarded = client.query.bind(client) as (...args: unknown[]) => unknown;
    let dropped = false;
    (client as unknown as { query: typeof guarded }).query = (...args) => {
      const first = args[0] as { text?: unknown } | string | null | undefined;
      const text = typeof first === 'string' ? first : typeof first?.text === 'string' ? first.text : '';
      // Dropped for a deadline, the connection's transaction can only roll back and its session lock goes with it: Kysely's
      // rollback and release of its migration lock are answered so, and Kysely reports its results (the migration that failed).
      // Answered once the client saw its socket close, so the pool does not take it back.
      if (dropped && GONE_WITH_THE_SESSION.test(text)) return withDeadline(ended, CLOSE_MILLIS, 'the dropped connection').catch(() => undefined).then(() => ({ command: '', rowCount: 0, oid: 0, rows: [], fields: [] }));
      const own = OWN_LOCK_TIMEOUT.exec(text);
      // Kysely's wait for its migration lock (another migrate at work) is Kysely's to end, at its own lock_timeout (0 or none: no bound).
      const ownMillis = own !== null ? Number(own[1]) || Number.MAX_SAFE_INTEGER : MIGRATION_LOCK.test(text) ? Number.MAX_SAFE_INTEGER : undefined;
      const pending = ownMillis === undefined ? guarded(...args) : withOwnLockTimeout(ownMillis, () => guarded(...args));
      if (pending instanceof Promise) {
        pending.catch((error: unknown) => {
          if (error instanceof ShardSilentError || error instanceof ShardLockError) dropped = true;
          record(error);
        });
      }
      return pending;
    };
    await learnBackendPid(client, connectMillis);
  };
  return {
    onConnect,
    failure: () => failure,
    destroyAll: () => {
      for (const client of clients) destroySocket(client);
    },
  };
}

/** `error` (the mover's wording: resume, abort) as a migration's. */
function forMigrations<E extends ShardSilentError | ShardLockError>(error: E, url: string): E {
  error.message = redactText(
    error.message
      .replace('The mover dropped its session and stopped. Resume once the shard answers (or abort).', 'The migration connection was dropped, so the shard\'s migrations of this run rolled back (unless run without transactions): run migrate again once the shard answers.')
      .replace(
        /The mover waits at most (\d+) ms for a lock: it dropped its session and stopped\. End those transactions \(or let them finish\), then resume \(or abort\)\./,
        'A migration waits at most $1 ms for a lock (the app\'s statements queue behind it): the migration connection was dropped, so the shard\'s migrations of this run rolled back (unless run without transactions). End those transactions (or let them finish), then run migrate again.',
      ),
    [url],
  );
  return error;
}
