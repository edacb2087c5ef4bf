/**
 * One check of one server, primary or standby: a single statement, run under its own deadline on a
 * pooled client (a client that did not answer in time is closed, never reused).
 */
import type { PoolClientLike } from '../cluster/server-pools';
import type { ServerSpec } from '../cluster/topology';
import { parseLsn, PRIMARY_WAL_END_SQL } from '../cluster/wal-position';
import type { Clock } from '../kernel/clock';
import { IDENTITY_SQL_EXPRESSION, parseIdentity, type ReplicaIdentity } from './replica-identity';

/** How checks reach servers: the dialect's pools, without the refusals of the write path. */
export interface CheckPools {
  acquire(server: ServerSpec): Promise<PoolClientLike>;
  /** Connections of `server`'s pool in use or waited for (0 when it has no pool yet). */
  busy(server: ServerSpec): number;
}

/** What one check of a server found. */
export interface ServerFacts {
  /** In recovery (a standby). */
  readonly standby: boolean;
  /** A standby's replay position, or where a primary's WAL ends; null before a standby replayed anything. */
  readonly lsn: bigint | null;
  /** The timeline a primary writes on (null on a standby). */
  readonly timeline: number | null;
  /** The shard identity it holds or replays. */
  readonly identity: ReplicaIdentity | undefined;
  /** Commit time (wall ms, the primary's clock) of the last transaction a standby replayed; null when none. */
  readonly replayTimestampMillis: number | null;
  /** The timeline a standby's WAL receiver streams (null when it streams nothing, or the role may not see it). */
  readonly receivedTimeline: number | null;
  /**
   * A WAL receiver process runs on the standby (its pid is visible to every role; its timeline only
   * to roles with pg_read_all_stats). False on a standby whose upstream is gone or not configured.
   */
  readonly receiving: boolean;
}

/** The check statement: the same for primaries and standbys (a promoted standby then shows as a primary). */
export const SERVER_CHECK_SQL = `select pg_is_in_recovery() as standby,
  case when pg_is_in_recovery() then pg_last_wal_replay_lsn()::text else ${PRIMARY_WAL_END_SQL} end as lsn,
  case when pg_is_in_recovery() then null else substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) end as timeline,
  (extract(epoch from pg_last_xact_replay_timestamp()) * 1000)::float8 as replay_ts,
  (select received_tli from pg_stat_wal_receiver) as received_tli,
  (select pid from pg_stat_wal_receiver) as receiver_pid,
  ${IDENTITY_SQL_EXPRESSION} as identity`;

/** Reads the facts of a check's row. */
export function parseServerFacts(row: Record<string, unknown>): ServerFacts {
  const lsn = typeof row['lsn'] === 'string' && row['lsn'] !== '' ? parseLsn(row['lsn']) : null;
  const timeline = typeof row['timeline'] === 'string' ? Number.parseInt(row['timeline'], 16) : null;
  const replay = row['replay_ts'];
  return Object.freeze({
    standby: row['standby'] === true,
    lsn,
    timeline: timeline === null || Number.isNaN(timeline) ? null : timeline,
    identity: parseIdentity(row['identity']),
    replayTimestampMillis: typeof replay === 'number' ? replay : null,
    receivedTimeline: typeof row['received_tli'] === 'number' ? row['received_tli'] : null,
    receiving: typeof row['receiver_pid'] === 'number',
  });
}

/**
 * Runs `sql` on a client of `server` and resolves its rows, or rejects after `timeoutMillis`
 * (checkout included). A client that did not answer in time is closed rather than returned.
 */
export function queryWithin(pools: CheckPools, clock: Clock, server: ServerSpec, sql: string, timeoutMillis: number): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    let client: PoolClientLike | undefined;
    let settled = false;
    const release = (destroy: boolean): void => {
      const c = client;
      client = undefined;
      c?.release(destroy);
    };
    const cancel = clock.setTimeout(() => {
      if (settled) return;
      settled = true;
      release(true);
      reject(new CheckTimeoutError(timeoutMillis));
    }, timeoutMillis);
    pools.acquire(server).then(
      (acquired) => {
        if (settled) return acquired.release(true);
        client = acquired;
        acquired.query(sql).then(
          ({ rows }) => {
            if (settled) return;
            settled = true;
            cancel();
            release(false);
            resolve(rows as Record<string, unknown>[]);
          },
          (error: unknown) => {
            if (settled) return;
            settled = true;
            cancel();
            release(true);
            reject(error as Error);
          },
        );
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        cancel();
        reject(error as Error);
      },
    );
  });
}

/** A check that got no answer in time (the server may be hung, or only slow). */
export class CheckTimeoutError extends Error {
  constructor(timeoutMillis: number) {
    super(`no answer within ${timeoutMillis} ms`);
    this.name = 'CheckTimeoutError';
  }
}

/** Checks `server` once within `timeoutMillis`. */
export async function checkServer(pools: CheckPools, clock: Clock, server: ServerSpec, timeoutMillis: number): Promise<ServerFacts> {
  const rows = await queryWithin(pools, clock, server, SERVER_CHECK_SQL, timeoutMillis);
  return parseServerFacts(rows[0] ?? {});
}
