/**
 * The fence on a move's source: writes to the moving slots are refused (SQLSTATE KS002) until the
 * fence's time runs out, so a fence left by a dead mover lifts itself. Raising it is not enough:
 * a transaction that began before it may not see it (a repeatable-read snapshot, a statement
 * already running), so the mover then waits until every transaction older than the fence ended.
 *
 * The fence of a move is one row of `kysely_scale.slot_move`, at slot {@link fenceSlot} (a
 * negative number no real slot has), which the capture trigger reads beside the moving slot's own
 * row: raising, making permanent and lowering it write one row whatever the number of slots (a
 * 1,024-slot fence written slot by slot took 3 ms of the fenced window). A move started before
 * this row existed has none: its fence is written on every slot's row, as then.
 */
import type { Client } from 'pg';
import { MOVER_APPLICATION_NAME } from './shard-session';
import { fenceSlot, quoteLiteral } from './shard-guard-sql';
import { epochCheck, queryChecked } from './mover-epoch';

/** A session that kept the fence (or the capture) from settling: the operator may need to end it. */
export interface Blocker {
  readonly pid: number;
  readonly applicationName: string;
  readonly state: string;
  readonly xactStart: Date;
}

/** The server's time now (fences and waits compare the server's clock, never the mover's). */
export async function serverNow(client: Client): Promise<Date> {
  const { rows } = await client.query<{ now: Date }>('select clock_timestamp() as now');
  return rows[0]!.now;
}

/** A raised fence: when (server time, after its commit) and the transactions older than it then. */
export interface RaisedFence {
  readonly since: Date;
  readonly blockers: readonly Blocker[];
}

/**
 * Raises the fence of `moveId`'s slots for `ttlMillis`; writes refused say they wait for
 * `nextVersion`. One round trip: the fence row is written and committed, then the server's time
 * is read and the sessions in a transaction older than it are listed (the first look of
 * {@link waitForOlderTransactions}). The session must not be in a transaction.
 */
export async function raiseFence(client: Client, moveId: number, ttlMillis: number, nextVersion: number): Promise<RaisedFence> {
  const id = Math.trunc(Number(moveId));
  const until = `clock_timestamp() + make_interval(secs => ${Number(ttlMillis)}::float8 / 1000)`;
  const set = `set fenced_until = ${until}, next_version = ${Math.trunc(Number(nextVersion))}`;
  // Simple-query protocol: the statements run in order in one message; the commit makes the fence visible before the time is read.
  const check = await epochCheck(client);
  const sql = `begin; ${check.sql}
    update kysely_scale.slot_move ${set} where slot = ${fenceSlot(id)} and move_id = ${id};
    update kysely_scale.slot_move ${set} where move_id = ${id} and not exists (select 1 from kysely_scale.slot_move where slot = ${fenceSlot(id)} and move_id = ${id});
    commit;
    ${OLDER_TRANSACTIONS_SQL('t.now')}`;
  let results: { rows: BlockerRow[] }[];
  try {
    results = (await client.query(sql)) as unknown as { rows: BlockerRow[] }[];
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw check.map(error);
  }
  const rows = results.at(-1)!.rows;
  return { since: rows[0]!.now, blockers: rows.filter((r) => r.pid !== null).map(toBlocker) };
}

interface BlockerRow {
  readonly now: Date;
  readonly pid: number | null;
  readonly application_name: string;
  readonly state: string;
  readonly xact_start: Date;
}

/**
 * Sessions of this database (other than the mover's) in a transaction that began before `since`
 * (an SQL expression over `t.now`), one row each beside `t.now`, or one row with a null pid when
 * there are none. `since` comes back from the server with millisecond precision: a millisecond is
 * added, so a transaction that began in the same millisecond, before the fence, is waited for too.
 */
const OLDER_TRANSACTIONS_SQL = (since: string): string => `with t as (select clock_timestamp() as now)
    select t.now, a.pid, a.application_name, a.state, a.xact_start from t left join pg_stat_activity a
      on a.datname = current_database() and a.pid <> pg_backend_pid() and a.backend_type = 'client backend'
        and a.application_name <> ${quoteLiteral(MOVER_APPLICATION_NAME)} and a.xact_start < ${since} + interval '1 millisecond'`;

function toBlocker(r: BlockerRow): Blocker {
  return Object.freeze({ pid: r.pid!, applicationName: r.application_name, state: r.state, xactStart: r.xact_start });
}

/** Lifts the fence of `moveId`'s slots (writes go through again, and are captured). */
export async function lowerFence(client: Client, moveId: number): Promise<void> {
  await queryChecked(client, `update kysely_scale.slot_move set fenced_until = null where move_id = ${Math.trunc(Number(moveId))} and fenced_until <> 'infinity'`);
}

/** Sessions of this database (other than the mover's) inside a transaction that began before `since` (or in the same millisecond). */
export async function olderTransactions(client: Client, since: Date): Promise<Blocker[]> {
  const { rows } = await client.query<BlockerRow>(OLDER_TRANSACTIONS_SQL('$1::timestamptz'), [since]);
  return rows.filter((r) => r.pid !== null).map(toBlocker);
}

/**
 * Waits until no transaction older than `since` is open, polling every `pollMillis`; returns the
 * blockers still open when `timeoutMillis` ran out (empty: done). `first`: what a look just taken
 * found ({@link raiseFence}), so the wait starts with a pause, or returns at once when it is empty.
 */
export async function waitForOlderTransactions(
  client: Client,
  since: Date,
  timeoutMillis: number,
  pause: (millis: number) => Promise<void>,
  monotonicNow: () => number,
  pollMillis = 2,
  first?: readonly Blocker[],
): Promise<Blocker[]> {
  const deadline = monotonicNow() + timeoutMillis;
  let blockers = first === undefined ? await olderTransactions(client, since) : [...first];
  for (;;) {
    if (blockers.length === 0 || monotonicNow() >= deadline) return blockers;
    await pause(pollMillis);
    blockers = await olderTransactions(client, since);
  }
}
