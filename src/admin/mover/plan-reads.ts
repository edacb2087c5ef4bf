/**
 * The reads a drain's plan makes of tables (the rows whose shard key is NULL, the unsharded tables'
 * rows), each after the table's `ACCESS SHARE` lock is had within {@link PLAN_LOCK_TIMEOUT_MILLIS}.
 * A read queued behind a migration's `ACCESS EXCLUSIVE` lock (held, or awaited behind a long
 * transaction) waited for it forever, with the operator's command hanging; now the drain is refused
 * (`E_MOVE_REFUSED`, reason `table-locked`, nothing changed) naming the table, the shard and the
 * backends keeping the lock, as `verify` and the mover's scans name them (`lock-blockers.ts`).
 * Every statement runs under the session's deadline (`shard-deadlines.ts`: a shard that stops
 * answering fails the read with `ShardSilentError`, which the plan's session, `plan-sessions.ts`,
 * turns into a refusal), and its rollback on the session's clock.
 */
import type { Client } from 'pg';
import { MoveRefusedError } from './mover-errors';
import { quoteTable } from './shard-guard-sql';
import { blockersContext, describeBlockers, lockForReading } from './lock-blockers';
import { SCAN_LOCK_TIMEOUT_MILLIS } from './paged-scan';
import { rollbackOrDrop } from './shard-session';

/** How long a plan's read waits for its table's lock: as long as the mover's scans do. */
export const PLAN_LOCK_TIMEOUT_MILLIS = SCAN_LOCK_TIMEOUT_MILLIS;

/** What a plan reads, for the refusal: `count the rows whose shard key is NULL`. */
export interface PlanRead<T> {
  readonly shardId: string;
  /** As registered or listed (`name` or `schema.name`). */
  readonly table: string;
  readonly purpose: string;
  readonly read: () => Promise<T>;
}

/** Runs `read` on `client` once `table` is locked for reading (in a read-only transaction of its own); refuses the drain when it is not within the deadline. */
export async function readLocked<T>(client: Client, { shardId, table, purpose, read }: PlanRead<T>): Promise<T> {
  await client.query('begin isolation level read committed read only');
  try {
    const blockers = await lockForReading(client, quoteTable(table), PLAN_LOCK_TIMEOUT_MILLIS);
    if (blockers !== undefined) {
      throw new MoveRefusedError(
        'table-locked',
        `The drain could not ${purpose} on shard "${shardId}": table ${table} stayed locked for ${PLAN_LOCK_TIMEOUT_MILLIS} ms` +
          (blockers.length > 0 ? ` by ${describeBlockers(blockers)}` : " (an ACCESS EXCLUSIVE lock, a migration's, held or awaited it)") +
          '. Nothing was changed. Let the migration finish (or end the transactions it waits for), then drain again.',
        { table, shard: shardId, sqlState: '55P03', ...blockersContext(blockers) },
      );
    }
    const value = await read();
    await client.query('commit');
    return value;
  } catch (error) {
    await rollbackOrDrop(client); // on the session's clock
    throw error;
  }
}
