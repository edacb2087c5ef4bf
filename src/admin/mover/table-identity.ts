/**
 * The sharded tables as one shard sees them: every name must name a table there, and no two names
 * the same table (`orders` and `public.orders`, or `Orders` quoted and unquoted). The catalog keys
 * its tables by the name given, so a second name for a registered table would be registered with
 * its own key column and moved twice or by the wrong column (rows on shards that do not own them).
 */
import type { ShardQueries } from './shard-deadlines';
import { ConfigError } from '../../kernel/errors';
import { quoteTable, type ShardedTableSpec } from './shard-guard-sql';

/** Refuses (`E_INVALID_CONFIG`, before anything changes) a name that is no table on `shardId`, or two names of one table. */
export async function requireDistinctTables(client: ShardQueries, shardId: string, tables: readonly ShardedTableSpec[]): Promise<void> {
  const { rows } = await client.query<{ oid: string | null; regclass: string | null }>(
    `select to_regclass(t)::oid::text as oid, to_regclass(t)::text as regclass from unnest($1::text[]) with ordinality as u(t, i) order by i`,
    [tables.map((t) => quoteTable(t.name))],
  );
  const seen = new Map<string, ShardedTableSpec>();
  for (const [i, table] of tables.entries()) {
    const row = rows[i];
    if (row?.oid == null) {
      throw new ConfigError(`tables.${table.name}`, `shard "${shardId}" has no table "${table.name}" (names are matched exactly, case included, as \`schema.table\` or a table on the search path); give the table as it is named there`);
    }
    const other = seen.get(row.oid);
    if (other !== undefined) {
      throw new ConfigError(
        `tables.${table.name}`,
        `"${table.name}" and "${other.name}" name the same table (${row.regclass ?? row.oid}) on shard "${shardId}"; a table is registered once: use "${other.name}"${other.keyColumn === table.keyColumn ? '' : `, whose shard key column is "${other.keyColumn}"`}`,
      );
    }
    seen.set(row.oid, table);
  }
}
