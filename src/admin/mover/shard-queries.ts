/**
 * The statements a mover helper runs on a shard session (a `pg` client, or anything with its
 * `query`), and what one statement may tell its session's deadline (`shard-deadlines.ts`): that it
 * bounds its own lock wait with `lock_timeout`, so a lock wait is its to end, not the deadline's.
 */
import type { QueryResult, QueryResultRow } from 'pg';

/** The statements a helper runs (every statement of a mover session is under its deadline). */
export interface ShardQueries {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

let nextOwnLockTimeout: number | undefined;

/**
 * Runs `start`, which must issue one statement synchronously (`() => client.query(…)`), telling the
 * session's deadline that this statement bounds its own lock wait at `millis` (its `SET LOCAL
 * lock_timeout`): the deadline leaves such a wait alone until a little after that.
 */
export function withOwnLockTimeout<T>(millis: number, start: () => T): T {
  const previous = nextOwnLockTimeout;
  nextOwnLockTimeout = millis;
  try {
    return start();
  } finally {
    nextOwnLockTimeout = previous;
  }
}

/** The own lock timeout of the statement being issued now (see {@link withOwnLockTimeout}), if it told one. */
export function ownLockTimeoutOfThisStatement(): number | undefined {
  return nextOwnLockTimeout;
}
