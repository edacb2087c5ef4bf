/**
 * Where each shard stands in its Kysely migrations, read from the shard's own migration table,
 * and whether the shards drifted apart (a shard lacks a migration another one has run).
 */
import { redactText, redactUrl } from '../kernel/redact';
import type { MigrationTableOptions, ShardTarget } from './shard-migrations';
import { withServerClient, type ServerQueries } from './server-client';
import type { ServerClientOptions } from './server-client-options';

/** One shard's migrations. */
export interface ShardMigrationStatus {
  readonly shardId: string;
  /** The shard primary's URL, password redacted. */
  readonly server: string;
  /** Migrations executed on the shard, in name order; null when the shard could not be read. */
  readonly executed: readonly string[] | null;
  /** The last executed migration; null when none ran (or unreadable). */
  readonly latest: string | null;
  /** Migrations that another shard has executed and this one has not. */
  readonly missing: readonly string[];
  /** Why the shard could not be read (redacted message). */
  readonly error?: string;
}

/** Every shard's migrations and whether they drifted. */
export interface MigrationStatus {
  readonly shards: readonly ShardMigrationStatus[];
  /** True when some shard lacks a migration that another has executed. Unreadable shards do not count. */
  readonly drift: boolean;
  /** True when some shard could not be read. */
  readonly unreadable: boolean;
}

/** Migration names as Kysely orders them by default. */
const byName = (a: string, b: string): number => a.localeCompare(b);

async function executedOn(client: ServerQueries, options: MigrationTableOptions): Promise<string[]> {
  const table = options.migrationTableName ?? 'kysely_migration';
  const schema = options.migrationTableSchema;
  // A shard never migrated has no table: that is "no migrations", not an error.
  const { rows } = await client.query<{ name: string | null }>(
    schema === undefined ? 'select to_regclass(quote_ident($1))::text as name' : "select to_regclass(format('%I.%I', $1::text, $2::text))::text as name",
    schema === undefined ? [table] : [schema, table],
  );
  const qualified = rows[0]?.name;
  if (qualified === null || qualified === undefined) return [];
  const names = await client.query<{ name: string }>(`select name from ${qualified}`);
  return names.rows.map((r) => r.name).sort(byName);
}

/** Reads every shard's migration table (in parallel) and compares them. */
export async function shardMigrationStatus(shards: readonly ShardTarget[], options: MigrationTableOptions & ServerClientOptions = {}): Promise<MigrationStatus> {
  const read = await Promise.all(
    shards.map(async (shard) => {
      try {
        return { shard, executed: await withServerClient(shard.url, `${shard.id} primary`, (c) => executedOn(c, options), options) };
      } catch (error) {
        return { shard, executed: null, error: redactText(String((error as { message?: unknown } | null)?.message ?? error), [shard.url]) };
      }
    }),
  );
  const everyName = new Set(read.flatMap((r) => r.executed ?? []));
  const statuses = read.map(({ shard, executed, error }) => {
    const own = new Set(executed ?? []);
    return Object.freeze({
      shardId: shard.id,
      server: redactUrl(shard.url),
      executed: executed === null ? null : Object.freeze(executed),
      latest: executed?.[executed.length - 1] ?? null,
      missing: Object.freeze(executed === null ? [] : [...everyName].filter((n) => !own.has(n)).sort(byName)),
      ...(error === undefined ? {} : { error }),
    });
  });
  return Object.freeze({
    shards: Object.freeze(statuses),
    drift: statuses.some((s) => s.missing.length > 0),
    unreadable: statuses.some((s) => s.executed === null),
  });
}
