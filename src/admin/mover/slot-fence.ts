/**
 * The fence on a move's source: writes to the moving slots are refused (SQLSTATE KS002) until the
 * fence's time runs out, so a fence left by a dead mover lifts itself. Raising it is not enough:
 * a transaction that began before it may not see it (a repeatable-read snapshot, a statement
 * already running), so the mover then waits until every transaction older than the fence ended.
 */
import type { Client } from 'pg';
import { MOVER_APPLICATION_NAME } from './shard-session';

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

/** Raises the fence of `moveId`'s slots for `ttlMillis`; writes refused say they wait for `nextVersion`. Returns when it was raised (server time). */
export async function raiseFence(client: Client, moveId: number, ttlMillis: number, nextVersion: number): Promise<Date> {
  await client.query(`update kysely_scale.slot_move set fenced_until = clock_timestamp() + make_interval(secs => $2::float8 / 1000), next_version = $3 where move_id = $1`, [
    moveId,
    ttlMillis,
    nextVersion,
  ]);
  return serverNow(client);
}

/** Lifts the fence of `moveId`'s slots (writes go through again, and are captured). */
export async function lowerFence(client: Client, moveId: number): Promise<void> {
  await client.query(`update kysely_scale.slot_move set fenced_until = null where move_id = $1 and fenced_until <> 'infinity'`, [moveId]);
}

/** Sessions of this database (other than the mover's) inside a transaction that began before `since`. */
export async function olderTransactions(client: Client, since: Date): Promise<Blocker[]> {
  const { rows } = await client.query<{ pid: number; application_name: string; state: string; xact_start: Date }>(
    `select pid, application_name, state, xact_start from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
        and application_name <> $2 and xact_start < $1`,
    [since, MOVER_APPLICATION_NAME],
  );
  return rows.map((r) => Object.freeze({ pid: r.pid, applicationName: r.application_name, state: r.state, xactStart: r.xact_start }));
}

/**
 * Waits until no transaction older than `since` is open, polling every `pollMillis`; returns the
 * blockers still open when `timeoutMillis` ran out (empty: done).
 */
export async function waitForOlderTransactions(client: Client, since: Date, timeoutMillis: number, pause: (millis: number) => Promise<void>, monotonicNow: () => number, pollMillis = 2): Promise<Blocker[]> {
  const deadline = monotonicNow() + timeoutMillis;
  for (;;) {
    const blockers = await olderTransactions(client, since);
    if (blockers.length === 0 || monotonicNow() >= deadline) return blockers;
    await pause(pollMillis);
  }
}
