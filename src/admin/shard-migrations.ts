/**
 * Kysely migrations on every shard: Kysely's own `Migrator` runs on each shard's primary in turn,
 * each shard keeping its own migration table, so a shard is migrated exactly as a single database
 * would be. The run stops at the first shard that fails and reports where every shard stands.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, sql, type MigrationProvider, type MigrationResult, type MigratorProps, type NoMigrations } from 'kysely';
import { Pool } from 'pg';
import { SLOT_FUNCTIONS_SQL } from '../cluster/slot-function-sql';
import type { Topology } from '../cluster/topology';
import { ConfigError } from '../kernel/errors';
import { redactUrl } from '../kernel/redact';
import { isServerFailure, nameServer } from './server-client';

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
  /** Called after each shard, e.g. to print progress. */
  onShard?: (result: ShardMigrationResult) => void;
}

/** Defaults of {@link MigrateShardsOptions}. */
export const MIGRATE_SHARDS_DEFAULTS = Object.freeze({ installSlotFunctions: true, connectionTimeoutMillis: 10_000 });

/** What happened on one shard. */
export interface ShardMigrationResult {
  readonly shardId: string;
  /** The shard primary's URL, password redacted. */
  readonly server: string;
  /** `migrated`: the run succeeded (perhaps with nothing to do); `failed`: see `error`; `skipped`: not run, an earlier shard failed. */
  readonly status: 'migrated' | 'failed' | 'skipped';
  /** Kysely's result of each migration the run meant to execute on this shard (absent when skipped or when it failed before planning). */
  readonly results?: readonly MigrationResult[];
  /** Why this shard failed. Kysely's and pg's errors as they are (SQLSTATE fields kept); a server that cannot be reached is named in the message. */
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
  const pool = new Pool({
    connectionString: target.url,
    max: 2,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? MIGRATE_SHARDS_DEFAULTS.connectionTimeoutMillis,
    application_name: 'kysely-scale migrate',
  });
  pool.on('error', () => undefined); // an idle connection that drops is replaced on the next checkout
  pool.on('connect', (client) => client.on('error', () => undefined)); // a checked-out one's statement fails with the error
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
  const named = (error: unknown): unknown => (isServerFailure(error) ? nameServer(error, `${target.id} primary`, target.url) : error);
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
    await db.destroy().catch(() => undefined);
  }
}
