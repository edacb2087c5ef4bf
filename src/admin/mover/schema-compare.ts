/**
 * Compares the shape of the sharded tables on two shards (columns in order with their types and
 * nullability, and the primary key), so a move never copies rows into a table that reads them
 * differently. The diff is readable: one line per difference.
 */
import type { Client } from 'pg';
import { quoteTable, type ShardedTableSpec } from './shard-guard-sql';

/** Lines describing `tables` on one shard (`orders: missing`, `orders.1 id integer not null`, `orders pk (user_id, id)`). */
export async function describeTables(client: Client, tables: readonly ShardedTableSpec[]): Promise<string[]> {
  const lines: string[] = [];
  for (const table of tables) {
    const { rows: exists } = await client.query<{ oid: number | null }>('select to_regclass($1)::oid as oid', [quoteTable(table.name)]);
    const oid = exists[0]?.oid;
    if (oid == null) {
      lines.push(`${table.name}: missing`);
      continue;
    }
    const { rows } = await client.query<{ name: string; type: string; notnull: boolean }>(
      `select attname as name, format_type(atttypid, atttypmod) as type, attnotnull as notnull from pg_attribute
        where attrelid = $1 and attnum > 0 and not attisdropped order by attnum`,
      [oid],
    );
    rows.forEach((c, i) => lines.push(`${table.name} column ${i + 1}: ${c.name} ${c.type}${c.notnull ? ' not null' : ''}`));
    const { rows: pk } = await client.query<{ def: string }>(`select pg_get_constraintdef(oid) as def from pg_constraint where conrelid = $1 and contype = 'p'`, [oid]);
    lines.push(`${table.name} ${pk[0]?.def ?? 'no primary key'}`);
  }
  return lines;
}

/** `- <a>: line` / `+ <b>: line` for every line only one side has; empty when they match. */
export function schemaDiff(a: { id: string; lines: readonly string[] }, b: { id: string; lines: readonly string[] }): string[] {
  const inB = new Set(b.lines);
  const inA = new Set(a.lines);
  return [...a.lines.filter((l) => !inB.has(l)).map((l) => `- ${a.id}: ${l}`), ...b.lines.filter((l) => !inA.has(l)).map((l) => `+ ${b.id}: ${l}`)];
}
