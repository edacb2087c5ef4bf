/**
 * Why a mover DDL statement never got its table's lock: the backends holding a lock on the tables
 * it changes, named with their application, state and transaction age, in an error the operator
 * can act on (end them, then resume) instead of PostgreSQL's bare 55P03 "lock timeout".
 */
import type { Client } from 'pg';
import { MoveFailedError } from './mover-errors';
import { quoteTable } from './shard-guard-sql';

/** What a mover DDL statement changes, for its error. */
export interface DdlTarget {
  /** What the statement does, as "could not …" continues (e.g. "install the fence policies"). */
  readonly purpose: string;
  /** The tables whose lock it needs (none for functions and the mover's own tables). */
  readonly tables: readonly string[];
}

interface LockHolder {
  readonly pid: number;
  readonly app: string;
  readonly state: string;
  readonly seconds: number;
  readonly relname: string;
}

/** The error for a DDL statement that timed out on its lock `attempts` times over `millis`. */
export async function ddlLockFailure(client: Client, target: DdlTarget, attempts: number, millis: number, cause: unknown): Promise<MoveFailedError> {
  const shard = await shardName(client);
  const holders = target.tables.length === 0 ? [] : await lockHolders(client, target.tables);
  const named = holders.map((h) => `backend ${h.pid} "${h.app}" ${h.state}${h.seconds > 0 ? ` for ${h.seconds} s` : ''} (on ${h.relname})`);
  const what = target.tables.length === 0 ? '' : ` on ${target.tables.map((t) => `"${t}"`).join(', ')}`;
  return new MoveFailedError(
    `Could not ${target.purpose} on shard "${shard}": the lock it needs${what} stayed taken for ${attempts} attempts (${(millis / 1000).toFixed(1)} s)` +
      (named.length > 0 ? ` by ${named.join(', ')}` : '') +
      '. End those transactions (or wait for them), then run the command again (`resume` when it left a move open); nothing of this step was applied.',
    { shard, tables: [...target.tables], pids: holders.map((h) => h.pid), sqlState: '55P03' },
    cause,
  );
}

/** The shard id the guard recorded here, else the database's name. */
async function shardName(client: Client): Promise<string> {
  const { rows } = await client.query<{ guarded: boolean; db: string }>(`select to_regclass('kysely_scale.shard_guard') is not null as guarded, current_database() as db`);
  if (rows[0]?.guarded !== true) return rows[0]?.db ?? 'unknown';
  const { rows: guard } = await client.query<{ id: string }>('select shard_id as id from kysely_scale.shard_guard limit 1');
  return guard[0]?.id ?? rows[0].db;
}

async function lockHolders(client: Client, tables: readonly string[]): Promise<LockHolder[]> {
  const { rows } = await client.query<LockHolder>(
    `select distinct a.pid, coalesce(a.application_name, '') as app, coalesce(a.state, 'unknown') as state,
            coalesce(extract(epoch from now() - a.xact_start), 0)::int as seconds, c.relname
       from pg_locks l join pg_stat_activity a on a.pid = l.pid join pg_class c on c.oid = l.relation
      where l.granted and l.pid <> pg_backend_pid()
        and l.relation in (select to_regclass(t) from unnest($1::text[]) t)
      order by seconds desc, a.pid limit 5`,
    [tables.map(quoteTable)],
  );
  return rows;
}
