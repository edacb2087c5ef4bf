/**
 * Counts and checksums of rows, per slot or per key: `count(*)` and the sum of a 64-bit hash of
 * each row's text (`hashtextextended(row::text, 0)`), so two shards holding the same rows (same
 * schema, same column order) give the same figures whatever the physical order. Per slot, the
 * shard streams each row's key and hash and the mover sums them by slot ({@link SlotLines}): the
 * SQL twin of the slot hash per row would cost the shard far more CPU than the scan itself.
 */
import { Writable } from 'node:stream';
import type { Client } from 'pg';
import { quoteIdentifier, quoteTable } from './shard-guard-sql';
import { SlotLines, slotSet, type SlotSet } from './slot-lines';
import type { ScanPace } from './scan-pacer';
import { pagedCopyOut } from './paged-scan';
import { keyFilterSql, type KeyedTable } from './table-keys';
import { copyOut } from './copy-out';

/** Rows and their checksum. */
export interface Checksum {
  readonly rows: number;
  readonly sum: string;
}

/**
 * Per-slot figures of `table`'s rows in the slots of `slots` (or every slot when `slots` is
 * undefined). Given `paced`, the scan runs in paced ranges of pages in one snapshot (the client's
 * transaction's when `paced.inTransaction`); otherwise as one statement.
 */
export async function slotChecksums(
  client: Client,
  table: KeyedTable,
  slots: SlotSet | undefined,
  slotCount: number,
  paced?: { readonly pace: ScanPace; readonly inTransaction: boolean },
): Promise<Map<number, Checksum>> {
  return (await slotFigures(client, table, slots, slotCount, paced)).perSlot;
}

/** {@link slotChecksums}, and the rows of the same scan whose shard key is NULL (see {@link nullKeyRows}). */
export async function slotFigures(
  client: Client,
  table: KeyedTable,
  slots: SlotSet | undefined,
  slotCount: number,
  paced?: { readonly pace: ScanPace; readonly inTransaction: boolean },
): Promise<{ perSlot: Map<number, Checksum>; nullKeys: number }> {
  const rows = new Map<number, number>();
  const sums = new Map<number, bigint>();
  const lines = new SlotLines({
    slots: slots ?? slotSet(undefined, slotCount),
    slotCount,
    forward: false,
    onRow: (slot, _key, rest) => {
      rows.set(slot, (rows.get(slot) ?? 0) + 1);
      sums.set(slot, (sums.get(slot) ?? 0n) + BigInt(rest.toString('latin1')));
    },
  });
  const t = quoteTable(table.name);
  const columns = `${quoteIdentifier(table.keyColumn)}::text, hashtextextended(x::text, 0)`;
  if (paced === undefined) await copyOut(client, `copy (select ${columns} from ${t} x) to stdout`, [lines, discard()]);
  else await pagedCopyOut(client, { table: t, columns, ...paced }, [lines, discard()]);
  return { perSlot: new Map([...rows].map(([slot, n]) => [slot, { rows: n, sum: sums.get(slot)!.toString() }])), nullKeys: lines.nullKeys };
}

/**
 * Rows of `table` whose shard key is NULL. They belong to no slot (the SQL twin is STRICT): no
 * keyed read finds them, no move takes them, and a drain would leave them behind. The router
 * refuses NULL keys, so they were written around it.
 */
export async function nullKeyRows(client: Pick<Client, 'query'>, table: { readonly name: string; readonly keyColumn: string }): Promise<number> {
  const { rows } = await client.query<{ n: number }>(`select count(*)::int as n from ${quoteTable(table.name)} where ${quoteIdentifier(table.keyColumn)} is null`);
  return rows[0]?.n ?? 0;
}

/** A sink for a stream whose work is done on the way (it passes nothing on). */
export function discard(): Writable {
  return new Writable({ write: (_chunk, _encoding, callback) => callback() });
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
