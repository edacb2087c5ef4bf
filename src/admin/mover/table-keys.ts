/** Sharded tables with their key column's SQL type, and key lists written as SQL literals. */
import type { ShardQueries } from './shard-deadlines';
import { MoveRefusedError } from './mover-errors';
import { quoteIdentifier, quoteLiteral, quoteTable, type ShardedTableSpec } from './shard-guard-sql';

/** A sharded table whose key column's type is known (`bigint`, `uuid`, `text`, …). */
export interface KeyedTable extends ShardedTableSpec {
  readonly keyType: string;
}

/** Looks up each table's key column type on `client`'s shard; a missing table or column is refused. */
export async function resolveKeyTypes(client: ShardQueries, tables: readonly ShardedTableSpec[], shardId: string): Promise<KeyedTable[]> {
  const out: KeyedTable[] = [];
  for (const table of tables) {
    const { rows } = await client.query<{ type: string | null }>(
      `select format_type(a.atttypid, a.atttypmod) as type from pg_attribute a
        where a.attrelid = to_regclass($1) and a.attname = $2 and not a.attisdropped`,
      [quoteTable(table.name), table.keyColumn],
    );
    const type = rows[0]?.type;
    if (type == null) {
      throw new MoveRefusedError('schema-mismatch', `Shard "${shardId}" has no table ${table.name} with a column ${table.keyColumn}: run your migrations there first.`, {
        shardId,
        table: table.name,
      });
    }
    out.push(Object.freeze({ ...table, keyType: type }));
  }
  return out;
}

/** `'{"1","2"}'::bigint[]`: keys as one SQL literal (COPY takes no parameters). */
export function keyArraySql(keys: readonly string[], keyType: string): string {
  const elements = keys.map((k) => `"${k.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(',');
  return `${quoteLiteral(`{${elements}}`)}::${keyType}[]`;
}

/** `"key" = any(<keys>)`. */
export function keyFilterSql(table: KeyedTable, keys: readonly string[]): string {
  return `${quoteIdentifier(table.keyColumn)} = any(${keyArraySql(keys, table.keyType)})`;
}
