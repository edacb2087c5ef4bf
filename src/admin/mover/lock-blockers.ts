/**
 * Who keeps a table's lock from the mover (or from `verify`): the backends that hold a
 * conflicting lock on it, those queued for one ahead of us (a migration's `ACCESS EXCLUSIVE`
 * request), and the transactions those wait for (`pg_blocking_pids`), each named by pid,
 * application, state, transaction age and the first part of its statement with its literals
 * hidden, so an error can say whom to end instead of PostgreSQL's bare 55P03 "lock timeout".
 */
import { withOwnLockTimeout, type ShardQueries } from './shard-queries';
import { statementStart } from './statement-start';

export { statementStart } from './statement-start';

/**
 * How long the mover waits for a lock: a scan's `ACCESS SHARE` on its table (only an `ACCESS
 * EXCLUSIVE` request, a migration's, makes it wait), and any statement of a mover session found
 * waiting on a lock by its deadline's probe (`shard-liveness.ts`).
 */
export const LOCK_WAIT_MILLIS = 5000;

/** A backend holding or awaiting a lock that keeps us waiting. */
export interface LockBlocker {
  readonly pid: number;
  readonly applicationName: string;
  /** `pg_stat_activity.state`: `active`, `idle in transaction`, … */
  readonly state: string;
  /** Age of its transaction, in seconds. */
  readonly seconds: number;
  /** The table whose lock it holds or awaits ('' when the lock is on no table: rows, an advisory lock). */
  readonly table: string;
  /** Whether it waits for the lock itself (queued ahead of us) rather than holding it. */
  readonly waiting: boolean;
  /** The first part of its statement (its last one when idle), every literal and comment hidden: see {@link statementStart}; {@link HIDDEN_STATEMENT} for another role's. */
  readonly statement: string;
}

/** A blocker's statement the mover's role may not see (another role's backend: `<insufficient privilege>`). */
export const HIDDEN_STATEMENT = '(statement hidden: another role)';

function named(row: LockBlocker): LockBlocker {
  return Object.freeze({ ...row, statement: row.statement === '<insufficient privilege>' ? HIDDEN_STATEMENT : statementStart(row.statement) });
}

/** Most blockers named (the oldest transactions first). */
const MOST_BLOCKERS = 5;

/**
 * The backends keeping a lock on `tables` (quoted, as in SQL) from this session: with `mode` (a lock
 * mode, such as `AccessExclusiveLock`, the only one that conflicts with a read's `ACCESS SHARE`),
 * those holding or awaiting that mode and those the waiters wait for; without it, those holding
 * any lock on them (what a DDL statement, which conflicts with every mode, waits for).
 */
export async function lockBlockers(client: ShardQueries, tables: readonly string[], mode?: string): Promise<LockBlocker[]> {
  const { rows } = await client.query<LockBlocker>(
    `with conflicting as (
       select l.pid, l.granted, c.relname
         from pg_locks l join pg_class c on c.oid = l.relation
        where l.relation in (select to_regclass(t) from unnest($1::text[]) t) and l.pid <> pg_backend_pid()
          and (l.mode = $2 or ($2 is null and l.granted))
     ), named as (
       select pid, not granted as waiting, relname from conflicting
       union
       select b.pid, false, c.relname from conflicting c, unnest(pg_blocking_pids(c.pid)) b(pid) where not c.granted and b.pid <> pg_backend_pid()
     )
     select * from (
       select distinct on (a.pid) a.pid, coalesce(a.application_name, '') as "applicationName", coalesce(a.state, 'unknown') as state,
              coalesce(extract(epoch from clock_timestamp() - a.xact_start), 0)::int as seconds, n.relname as table, n.waiting, left(a.query, 1000) as statement
         from named n join pg_stat_activity a on a.pid = n.pid
        order by a.pid, n.waiting
     ) x order by seconds desc, pid limit ${MOST_BLOCKERS}`,
    [tables, mode ?? null],
  );
  return rows.map(named);
}

/**
 * The backends `pid` waits for, asked from another session (a deadline's probe): those holding or
 * queued ahead for a lock it wants (`pg_blocking_pids`), and the ones those queued wait for, each
 * named with the table `pid` waits on ('' for a lock on no table: rows, an advisory lock).
 */
export async function backendBlockers(client: ShardQueries, pid: number): Promise<LockBlocker[]> {
  const { rows } = await client.query<LockBlocker>(
    `with direct as (select unnest(pg_blocking_pids($1)) as pid),
     named as (
       select d.pid, exists (select 1 from pg_locks l where l.pid = d.pid and not l.granted) as waiting from direct d
       union
       select b.pid, false from direct d, unnest(pg_blocking_pids(d.pid)) b(pid)
     ), wanted as (
       select coalesce((select l.relation::regclass::text from pg_locks l where l.pid = $1 and l.relation is not null and (not l.granted or l.locktype = 'tuple')
                         order by l.granted limit 1), '') as relname
     )
     select * from (
       select distinct on (a.pid) a.pid, coalesce(a.application_name, '') as "applicationName", coalesce(a.state, 'unknown') as state,
              coalesce(extract(epoch from clock_timestamp() - a.xact_start), 0)::int as seconds, w.relname as table, n.waiting, left(a.query, 1000) as statement
         from named n join pg_stat_activity a on a.pid = n.pid cross join wanted w
        where n.pid <> $1
        order by a.pid, n.waiting
     ) x order by seconds desc, pid limit ${MOST_BLOCKERS}`,
    [pid],
  );
  return rows.map(named);
}

/** `backend 123 "psql" idle in transaction for 12 s, holding its lock on orders: "select … where id = ?"`, one per blocker, semicolon-separated (`holding it` for a lock on no table). */
export function describeBlockers(blockers: readonly LockBlocker[]): string {
  return blockers
    .map((b) => {
      const lock = `${b.waiting ? ', waiting for' : ', holding'} ${b.table === '' ? 'it' : `its lock on ${b.table}`}`;
      const statement = b.statement === '' ? '' : b.statement === HIDDEN_STATEMENT ? ` ${HIDDEN_STATEMENT}` : `: "${b.statement}"`;
      return `backend ${b.pid} "${b.applicationName}" ${b.state}${b.seconds > 0 ? ` for ${b.seconds} s` : ''}${lock}${statement}`;
    })
    .join('; ');
}

/** The blockers as an error's context holds them (no statement text: it is in the message, shortened). */
export function blockersContext(blockers: readonly LockBlocker[]): { pids: number[]; blockers: { pid: number; applicationName: string; state: string; waiting: boolean }[] } {
  return { pids: blockers.map((b) => b.pid), blockers: blockers.map((b) => ({ pid: b.pid, applicationName: b.applicationName, state: b.state, waiting: b.waiting })) };
}

/** The shard id the guard recorded on `client`'s database, else the database's name. */
export async function shardName(client: ShardQueries): Promise<string> {
  const { rows } = await client.query<{ guarded: boolean; db: string }>(`select to_regclass('kysely_scale.shard_guard') is not null as guarded, current_database() as db`);
  if (rows[0]?.guarded !== true) return rows[0]?.db ?? 'unknown';
  const { rows: guard } = await client.query<{ id: string }>('select shard_id as id from kysely_scale.shard_guard limit 1');
  return guard[0]?.id ?? rows[0].db;
}

/**
 * Takes `table`'s (quoted) `ACCESS SHARE` lock in `client`'s transaction, waiting at most
 * `timeoutMillis`, then runs `andThen` (more `SET LOCAL`s, in the same round trip). Resolves with
 * undefined once locked (for the rest of the transaction), or with the backends that kept it (the
 * transaction stays usable: the wait ran in a savepoint).
 */
export async function lockForReading(client: ShardQueries, table: string, timeoutMillis: number, andThen = ''): Promise<readonly LockBlocker[] | undefined> {
  try {
    const millis = Math.max(1, Math.round(timeoutMillis));
    // The wait is this statement's own (lock_timeout): the session's deadline leaves it to it.
    await withOwnLockTimeout(millis, () =>
      client.query(
        `savepoint kysely_scale_read_lock; set local lock_timeout = '${millis}ms'; lock table ${table} in access share mode; release savepoint kysely_scale_read_lock; set local lock_timeout = 0${andThen === '' ? '' : `; ${andThen}`}`,
      ),
    );
    return undefined;
  } catch (error) {
    if ((error as { code?: unknown }).code !== '55P03') throw error;
    await client.query('rollback to savepoint kysely_scale_read_lock');
    return lockBlockers(client, [table], 'AccessExclusiveLock');
  }
}
