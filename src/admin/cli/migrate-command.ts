import { readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { migrateCatalogShards, parseShardArgument } from '../admin-commands';
import { migrateShards, MIGRATE_SHARDS_DEFAULTS, type ShardMigrationResult, type ShardMigrationResultSet } from '../shard-migrations';
import { migrationTableFlags, MIGRATION_TABLE_OPTIONS, MIGRATION_TABLE_USAGE } from './migration-flags';
import { redactText } from '../../kernel/redact';
import { CliUsageError, integerFlag, plural, stringFlag, stringsFlag, type CliCommand } from './cli-command';

/** `migrate`: Kysely migrations on every shard, one shard after another, stopping at the first failure. */
export const migrateCommand: CliCommand = {
  summary: 'run Kysely migrations on every shard (one after another; stops at the first failure) and install the slot functions',
  usage: [
    '--folder <dir>                         migrations (compiled .js; .ts when run under tsx)',
    '--to <name>                            migrate up or down to this migration (default: the latest)',
    '--shard id=primaryUrl                  the shards, in order, instead of --catalog (repeatable)',
    `--statement-timeout-ms <n>             a statement without an answer this long has its shard probed: silent, the shard fails; at work, it goes on (default ${MIGRATE_SHARDS_DEFAULTS.statementTimeoutMillis})`,
    ...MIGRATION_TABLE_USAGE,
  ],
  options: { folder: { type: 'string' }, to: { type: 'string' }, shard: { type: 'string', multiple: true }, 'statement-timeout-ms': { type: 'string' }, ...MIGRATION_TABLE_OPTIONS },
  needsCatalog: false,
  async run(values, context) {
    const folder = stringFlag(values, 'folder');
    if (folder === undefined) throw new CliUsageError('migrate needs --folder <dir> of migrations.');
    if (!statSync(folder, { throwIfNoEntry: false })?.isDirectory()) throw new CliUsageError(`--folder ${JSON.stringify(folder)} is not a folder.`);
    let shards;
    try {
      shards = stringsFlag(values, 'shard').map(parseShardArgument);
    } catch (error) {
      throw new CliUsageError((error as Error).message);
    }
    if (shards.length > 0 && values.catalog !== undefined) throw new CliUsageError('Give --catalog or --shard, not both.');
    if (shards.length === 0 && context.catalog === undefined) throw new CliUsageError('migrate needs --catalog <url> (or KYSELY_SCALE_CATALOG), or the shards as --shard id=primaryUrl.');
    const to = stringFlag(values, 'to');
    const statementTimeoutMillis = integerFlag(values, 'statement-timeout-ms', 1);
    const printed = new Set<string>();
    const options = {
      migrationFolder: resolve(folder),
      ...(to === undefined ? {} : { to }),
      ...(statementTimeoutMillis === undefined ? {} : { statementTimeoutMillis }),
      ...migrationTableFlags(values),
      // Each shard's line is printed once, when the shard is done: on stdout as part of the result
      // in text mode, on stderr as progress with --json (stdout then holds only the JSON).
      onShard: (r: ShardMigrationResult) => {
        (context.json ? context.progress : context.output).write(`${redactText(shardLine(r))}\n`);
        printed.add(r.shardId);
      },
    };
    const outcome =
      shards.length > 0 ? await migrateShards({ ...options, shards: shards.map((s) => ({ id: s.id, url: s.primary })) }) : await migrateCatalogShards(context.catalog!, options);
    const hint = outcome.error !== undefined && needsTypeScriptLoader(folder, outcome.error) ? TS_HINT : '';
    const text = summary(outcome, context.json ? new Set() : printed);
    return { result: printable(outcome), text: text + hint, exitCode: outcome.error === undefined ? 0 : 1 };
  },
};

const TS_HINT =
  '\nThe folder holds TypeScript migrations: run the command under tsx (npx tsx node_modules/.bin/kysely-scale-admin migrate …), or point --folder at compiled JavaScript.';

/** An error's code (a SQLSTATE, a kysely-scale code, a Node code) and message. */
function errorParts(error: unknown): { code: string | undefined; message: string } {
  const e = error as { code?: unknown; message?: unknown } | null;
  return { code: typeof e?.code === 'string' ? e.code : undefined, message: typeof e?.message === 'string' ? e.message : String(error) };
}

/** `42P07: relation "accounts" already exists`: the code first, as every command prints a failure. */
function errorText(error: unknown): string {
  const { code, message } = errorParts(error);
  return code === undefined ? message : `${code}: ${message}`;
}

function shardLine(r: ShardMigrationResult): string {
  const at = r.current === undefined ? 'unknown' : (r.current ?? '(none)');
  const ran = (r.results ?? []).filter((m) => m.status === 'Success').map((m) => `${m.direction === 'Down' ? 'undid' : 'ran'} ${m.migrationName}`);
  const failedAt = (r.results ?? []).find((m) => m.status === 'Error')?.migrationName;
  switch (r.status) {
    case 'migrated':
      return `${r.shardId}  migrated  at ${at}${ran.length === 0 ? ' (nothing to do)' : ` (${ran.join(', ')})`}`;
    case 'failed':
      return `${r.shardId}  FAILED    at ${at}${failedAt === undefined ? '' : `; migration ${failedAt} failed`}: ${errorText(r.error)}`;
    case 'skipped':
      return `${r.shardId}  skipped   at ${at}${r.pending.length === 0 ? '' : `, ${plural(r.pending.length, 'migration')} pending`} (an earlier shard failed)`;
  }
}

/** The shards' lines (but those already printed) and a closing sentence. */
function summary(outcome: ShardMigrationResultSet, printed: ReadonlySet<string>): string {
  if (outcome.shards.length === 0) return `${errorText(outcome.error)}\nNothing migrated: fix the cause and run migrate again.`;
  const lines = outcome.shards.filter((s) => !printed.has(s.shardId)).map(shardLine);
  const migrated = outcome.shards.filter((s) => s.status === 'migrated').length;
  lines.push(
    outcome.failedShard === undefined
      ? `All ${plural(outcome.shards.length, 'shard')} migrated.`
      : `Stopped at ${outcome.failedShard}: ${migrated} of ${plural(outcome.shards.length, 'shard')} migrated; fix the cause and run migrate again.`,
  );
  return lines.join('\n');
}

/** The result as JSON can hold it: errors as { message, code }. */
function printable(outcome: ShardMigrationResultSet): unknown {
  const error = (e: unknown): unknown => (e === undefined ? undefined : errorParts(e));
  return {
    ok: outcome.error === undefined,
    failedShard: outcome.failedShard ?? null,
    error: error(outcome.error) ?? null,
    shards: outcome.shards.map((s) => ({ ...s, error: error(s.error) ?? null })),
  };
}

function needsTypeScriptLoader(folder: string, error: unknown): boolean {
  const hasTs = readdirSync(folder).some((f) => /\.m?ts$/.test(f) && !/\.d\.m?ts$/.test(f));
  const { code, name } = (error ?? {}) as { code?: unknown; name?: unknown };
  return hasTs && (name === 'SyntaxError' || code === 'ERR_UNKNOWN_FILE_EXTENSION');
}
