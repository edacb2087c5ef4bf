/**
 * Why a mover DDL statement never got its table's lock: the backends holding a lock on the tables
 * it changes, named with their application, state, transaction age and statement, in an error the
 * operator can act on (end them, then resume) instead of PostgreSQL's bare 55P03 "lock timeout".
 */
import type { Client } from 'pg';
import { MoveFailedError } from './mover-errors';
import { quoteTable } from './shard-guard-sql';
import { blockersContext, describeBlockers, lockBlockers, shardName } from './lock-blockers';

/** What a mover DDL statement changes, for its error. */
export interface DdlTarget {
  /** What the statement does, as "could not …" continues (e.g. "install the fence policies"). */
  readonly purpose: string;
  /** The tables whose lock it needs (none for functions and the mover's own tables). */
  readonly tables: readonly string[];
}

/** The error for a DDL statement that timed out on its lock `attempts` times over `millis`. */
export async function ddlLockFailure(client: Client, target: DdlTarget, attempts: number, millis: number, cause: unknown): Promise<MoveFailedError> {
  const shard = await shardName(client);
  const holders = target.tables.length === 0 ? [] : await lockBlockers(client, target.tables.map(quoteTable));
  const what = target.tables.length === 0 ? '' : ` on ${target.tables.map((t) => `"${t}"`).join(', ')}`;
  return new MoveFailedError(
    `Could not ${target.purpose} on shard "${shard}": the lock it needs${what} stayed taken for ${attempts} attempts (${(millis / 1000).toFixed(1)} s)` +
      (holders.length > 0 ? ` by ${describeBlockers(holders)}` : '') +
      '. End those transactions (or wait for them), then run the command again (`resume` when it left a move open); nothing of this step was applied.',
    { shard, tables: [...target.tables], sqlState: '55P03', ...blockersContext(holders) },
    cause,
  );
}
