/**
 * Whether a shard session's backend is alive, asked from a separate, fresh connection (the same
 * connection settings, connect and question within one short deadline): what a deadline of the
 * mover's (`shard-watchdog.ts`) asks before it drops a session that is slow to answer. A slow
 * answer alone does not say the shard is silent: PostgreSQL may be running the end of a COPY (its
 * AFTER ROW triggers, foreign key checks), a delete of a key with millions of rows, or waiting for
 * a lock. `pg_stat_activity` on the session's backend tells them apart:
 * - no connection or no answer in time: the shard is silent (frozen, cut off);
 * - no such backend, or idle while the mover still waits for its answer: the path to it dropped;
 * - active but waiting on the mover's socket (`Client` waits) while the mover waits on it: the same;
 * - waiting for a lock: how long (`pg_locks.waitstart`), and past a bound who keeps it;
 * - otherwise active: working.
 */
import { Client, type ClientConfig } from 'pg';
import type { Clock } from '../../kernel/clock';
import { DeadlineError, withDeadline } from '../../kernel/deadline';
import { redactText } from '../../kernel/redact';
import { destroySocket } from '../server-client';
import { backendBlockers, type LockBlocker } from './lock-blockers';

/** What a probe found about a session's backend. */
export type BackendFinding =
  | { readonly kind: 'unreachable'; readonly why: string }
  | { readonly kind: 'gone' }
  | { readonly kind: 'idle'; readonly state: string }
  | { readonly kind: 'client'; readonly waitEvent: string }
  | { readonly kind: 'lock'; readonly waitedMillis: number; readonly table: string; readonly blockers?: readonly LockBlocker[] }
  | { readonly kind: 'working'; readonly waitEvent: string };

/** How to probe a backend. */
export interface ProbeRequest {
  /** The session's connection settings (its URL, or its client's parameters). */
  readonly config: ClientConfig;
  readonly pid: number;
  /** Connect and answer within this, in all. */
  readonly deadlineMillis: number;
  readonly clock: Clock;
  /** Name the backends keeping a lock the backend has waited for at least this long (by the server's count: `pg_locks.waitstart`; 0: whatever it says). */
  readonly blockersAfterMillis: number;
}

/** `application_name` of the probe's connections. */
export const PROBE_APPLICATION_NAME = 'kysely-scale mover probe';

const CLOSE_MILLIS = 1000;

/**
 * Probes `request.pid`'s backend and hands the finding to `decide` (a probe that fails finds the
 * shard unreachable); never throws. When `decide` returns true (it dropped the session), the
 * backend is ended (`pg_terminate_backend`) over the probe's connection: a dropped session must not
 * stay queued for a lock, nor keep its transaction open on a path that dropped.
 */
export async function probeBackend(request: ProbeRequest, decide: (finding: BackendFinding) => boolean): Promise<void> {
  const { clock, deadlineMillis } = request;
  const started = clock.monotonicNow();
  const probe = new Client({ ...request.config, application_name: PROBE_APPLICATION_NAME, connectionTimeoutMillis: Math.max(1, Math.ceil(deadlineMillis)) });
  probe.on('error', () => undefined);
  const timely = <T>(promise: Promise<T>, what: string): Promise<T> =>
    withDeadline(promise, Math.max(1, Math.ceil(deadlineMillis - (clock.monotonicNow() - started))), what, { clock, onLate: () => destroySocket(probe) });
  let finding: BackendFinding;
  try {
    await timely(probe.connect(), 'the login');
    finding = await timely(ask(probe, request), 'the question');
  } catch (error) {
    // pg's own connect timeout says "timeout expired"; ours names what got no answer.
    const late = error instanceof DeadlineError ? error.what : error instanceof Error && error.message === 'timeout expired' ? 'the login' : undefined;
    finding = { kind: 'unreachable', why: late !== undefined ? `no answer to ${late} in ${deadlineMillis} ms` : redactText(error instanceof Error ? error.message : String(error)) };
  }
  try {
    if (decide(finding) && finding.kind !== 'unreachable') await timely(probe.query('select pg_terminate_backend($1)', [request.pid]), 'the termination').catch(() => undefined);
  } finally {
    void withDeadline(probe.end(), CLOSE_MILLIS, 'the probe close', { clock, onLate: () => destroySocket(probe) }).catch(() => undefined);
  }
}

interface ActivityRow {
  readonly state: string | null;
  readonly type: string | null;
  readonly event: string | null;
  readonly lockMillis: number | null;
  readonly table: string | null;
}

async function ask(probe: Client, request: ProbeRequest): Promise<BackendFinding> {
  // waitstart (PostgreSQL 14+) read through to_jsonb, so older servers answer too (null there).
  const { rows } = await probe.query<ActivityRow>(
    `select a.state, a.wait_event_type as type, a.wait_event as event,
            (select (extract(epoch from clock_timestamp() - min((to_jsonb(l) ->> 'waitstart')::timestamptz)) * 1000)::float8
               from pg_locks l where l.pid = a.pid and not l.granted) as "lockMillis",
            (select l.relation::regclass::text from pg_locks l where l.pid = a.pid and l.relation is not null and (not l.granted or l.locktype = 'tuple')
              order by l.granted limit 1) as table
       from pg_stat_activity a where a.pid = $1`,
    [request.pid],
  );
  const row = rows[0];
  if (row === undefined) return { kind: 'gone' };
  if (row.state !== null && row.state.startsWith('idle')) return { kind: 'idle', state: row.state };
  if (row.state !== 'active') return { kind: 'working', waitEvent: row.state ?? 'unknown' };
  if (row.type === 'Client') return { kind: 'client', waitEvent: row.event ?? 'Client' };
  if (row.type !== 'Lock') return { kind: 'working', waitEvent: row.event ?? 'on CPU' };
  const waitedMillis = row.lockMillis ?? 0;
  const table = row.table ?? 'the rows it waits for';
  if (waitedMillis < request.blockersAfterMillis) return { kind: 'lock', waitedMillis, table };
  return { kind: 'lock', waitedMillis, table, blockers: await backendBlockers(probe, request.pid) };
}

/** A finding as the error's text: "a new connection to it failed too (no answer to the login in 1000 ms): …". */
export function describeFinding(finding: BackendFinding, pid: number): string {
  switch (finding.kind) {
    case 'unreachable':
      return `a new connection to it failed too (${finding.why}): the shard is frozen, overloaded or unreachable`;
    case 'gone':
      return `its backend (pid ${pid}) no longer exists: the connection to it was lost`;
    case 'idle':
      return `its backend (pid ${pid}) is ${finding.state}, its answer never came: the connection to it was lost`;
    case 'client':
      return `its backend (pid ${pid}) waits on the connection (${finding.waitEvent}) while the mover waits on it: the connection was lost`;
    case 'lock':
    case 'working':
      return `its backend (pid ${pid}) is still at work`;
  }
}
