/**
 * Counts and checksums of rows, per slot or per key: `count(*)` and the sum of a 64-bit hash of
 * each row's text (`hashtextextended(row::text, 0)`), so two shards holding the same rows (same
 * schema, same column order) give the same figures whatever the physical order.
 */
import type { Client } from 'pg';
import { quoteIdentifier, quoteTable, slotFilterSql } from './shard-guard-sql';
import { keyFilterSql, type KeyedTable } from './table-keys';

/** Rows and their checksum. */
export interface Checksum {
  readonly rows: number;
  readonly sum: string;
}

/** Per-slot figures of `table`'s rows in the slots of `bits` (or every slot when `bits` is undefined). */
export async function slotChecksums(client: Client, table: KeyedTable, bits: string | undefined, slotCount: number): Promise<Map<number, Checksum>> {
  const where = bits === undefined ? 'true' : slotFilterSql(table, bits, slotCount);
  const { rows } = await client.query<{ slot: number; n: string; h: string }>(
    `select kysely_scale_slot(${quoteIdentifier(table.keyColumn)}::text, ${slotCount}) as slot, count(*) as n, coalesce(sum(hashtextextended(x::text, 0)), 0)::text as h
       from ${quoteTable(table.name)} x where ${where} group by 1`,
  );
  return new Map(rows.map((r) => [r.slot, { rows: Number(r.n), sum: r.h }]));
}

/** Per-key figures of `table`'s rows with the given keys. */
export async function keyChecksums(client: Client, table: KeyedTable, keys: readonly string[]): Promise<Map<string, Checksum>> {
  if (keys.length === 0) return new Map();
  const { rows } = await client.query<{ key: string; n: string; h: string }>(
    `select ${quoteIdentifier(table.keyColumn)}::text as key, count(*) as n, coalesce(sum(hashtextextended(x::text, 0)), 0)::text as h
       from ${quoteTable(table.name)} x where ${keyFilterSql(table, keys)} group by 1`,
  );
  return new Map(rows.map((r) => [r.key, { rows: Number(r.n), sum: r.h }]));
}

/** The entries where two maps differ (missing on one side counts), as readable lines. */
export function checksumDifferences<K>(what: string, expected: Map<K, Checksum>, actual: Map<K, Checksum>, labels: [string, string]): string[] {
  const out: string[] = [];
  for (const k of new Set([...expected.keys(), ...actual.keys()])) {
    const a = expected.get(k) ?? { rows: 0, sum: '0' };
    const b = actual.get(k) ?? { rows: 0, sum: '0' };
    if (a.rows !== b.rows || a.sum !== b.sum) out.push(`${what} ${String(k)}: ${labels[0]} ${a.rows} rows (checksum ${a.sum}), ${labels[1]} ${b.rows} rows (checksum ${b.sum})`);
  }
  return out;
}
