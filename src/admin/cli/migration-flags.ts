/** Flags naming where Kysely keeps its migration table, shared by `migrate` and `status`. */
import type { MigrationTableOptions } from '../shard-migrations';
import { stringFlag, type CliValues } from './cli-command';

export const MIGRATION_TABLE_OPTIONS = {
  'migration-table': { type: 'string' },
  'migration-schema': { type: 'string' },
} as const;

export const MIGRATION_TABLE_USAGE = [
  '--migration-table <name>               Kysely migration table (default kysely_migration)',
  '--migration-schema <name>              its schema (default: the search path)',
];

/** The migration table flags as Migrator options. */
export function migrationTableFlags(values: CliValues): MigrationTableOptions {
  const table = stringFlag(values, 'migration-table');
  const schema = stringFlag(values, 'migration-schema');
  return { ...(table === undefined ? {} : { migrationTableName: table }), ...(schema === undefined ? {} : { migrationTableSchema: schema }) };
}
