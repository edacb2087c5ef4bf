/**
 * Whether a shard session's backend is alive, asked over a probe connection of the session's own
 * (the same connection settings; opened when a deadline first passes and kept, closed with the
 * session, so a server at its connection limit later cannot refuse it): what a deadline of the
 * mover's (`shard-watchdog.ts`) asks before it drops a session that is slow to answer. A slow
 * answer alone does not say the shard is silent: PostgreSQL may be running the end of a COPY (its
 * AFTER ROW triggers, foreign key checks), a delete of a key with millions of rows, or waiting for
 * a lock. `pg_stat_activity` on the session's backend (its pid as the server tells it,
 * `pg_backend_pid()`, not the pid a pooler may hand out) tells them apart:
 * - no connection or no answer in time: the shard is silent (frozen, cut off); a kept connection
 *   is asked for the whole time, and from half of it a new connection too (the kept one may have
 *   gone stale): the first answer counts;
 * - an error from the server instead (too many connections, a role's connection limit, a password
 *   changed, starting up): the server is alive but cannot be asked: ask again later;
 * - no such backend, or idle (or waiting to read, with `track_activities` off) while the mover
 *   still waits for its answer: the path to it dropped (with `track_activities` off the state reads
 *   `disabled` but the wait event is still shown: ClientRead when idle, none on the CPU: at work;
 *   another role's backend shows neither: the shard cannot be inspected);
 * - active but waiting on the mover's socket (`Client` waits) while the mover waits on it: the same;
 * - waiting for a lock: how long (`pg_locks.waitstart`), and past a bound who keeps it;
 * - otherwise at work.
 * Every wait is timed on the session's clock (`withDeadline`), none on the system's.
 */
import { Client, type ClientConfig } from 'pg';
import type { Clock } from '../../kernel/clock';
import { DeadlineError, withDeadline } from '../../kernel/deadline';
import { redactText } from '../../kernel/redact';
import { destroySocket } from '../server-client';
import { backendBlockers, type LockBlocker } from './lock-blockers';

/** What a probe found about a session's backend. */
export type BackendFinding =
  /** `kept`: why the session's kept probe connection failed first (then `why` is the new connection's). */
  | { readonly kind: 'unreachable'; readonly why: string; readonly kept?: string }
  | { readonly kind: 'refused'; readonly why: string }
  | { readonly kind: 'gone' }
  | { readonly kind: 'idle'; readonly state: string }
  | { readonly kind: 'client'; readonly waitEvent: string }
  | LockFinding
  | { readonly kind: 'working'; readonly waitEvent: string };

/** The backend waits for a lock. */
export interface LockFinding {
  readonly kind: 'lock';
  /** Since when the server says it waits (`pg_locks.waitstart`, PostgreSQL 14+); undefined when it does not say. */
  readonly waitedMillis: number | undefined;
  /** The table it waits on, if any: `orders`. */
  readonly table: string | undefined;
  /** The lock as a message names it: `a lock on orders`, `a lock on rows of orders`, `an advisory lock`. */
  readonly lock: string;
  readonly blockers?: readonly LockBlocker[];
}

/** One question about a backend. */
export interface ProbeRequest {
  readonly pid: number;
  /** Connect (if need be) and answer within this, in all. */
  readonly deadlineMillis: number;
  /** Name the backends keeping a lock the backend has waited for at least this long (by the server's count: `pg_locks.waitstart`; 0: whatever it says). */
  readonly blockersAfterMillis: number;
}

/** A session's probe connection: opened at its first question, kept until {@link close}. */
export interface BackendProber {
  /**
   * Asks about `request.pid`'s backend and hands the finding to `decide`; never throws. When
   * `decide` returns true (it dropped the session), the backend is ended (`pg_terminate_backend`):
   * a dropped session must not stay queued for a lock, nor keep its transaction open on a path
   * that dropped.
   */
  probe(request: ProbeRequest, decide: (finding: BackendFinding) => boolean): Promise<void>;
  close(): void;
}

/** `application_name` of the probe's connections. */
export const PROBE_APPLICATION_NAME = 'kysely-scale mover probe';

const CLOSE_MILLIS = 1000;

/** One probe connection asking: its client (destroyed to abandon it) and what it found (rejects with what failed). */
interface Attempt {
  readonly client: Client | undefined;
  readonly result: Promise<{ readonly client: Client; readonly finding: BackendFinding }>;
}

/** How a probe ended: its finding, and the connection that answered (none when none did). */
interface Answer {
  readonly client?: Client;
  readonly finding: BackendFinding;
  /** The answering connection is not kept (another probe's is): closed once this probe is done with it. */
  readonly closeAfterUse?: boolean;
}

/** A prober connecting with `config()`, timed on `clock`. */
export function backendProber(config: () => ClientConfig, clock: Clock): BackendProber {
  let kept: Promise<Client> | undefined;
  let current: Client | undefined;
  let closed = false;
  const drop = (client: Client | undefined): void => {
    if (client === undefined) return;
    if (current === client) {
      current = undefined;
      kept = undefined;
    }
    destroySocket(client);
  };
  const keep = (client: Client, connecting: Promise<Client>): void => {
    current = client;
    kept = connecting;
  };
  /** A new connection (kept only once {@link keep} is called with it). */
  const connect = (): { client: Client; connecting: Promise<Client> } => {
    const client = new Client({ ...config(), application_name: PROBE_APPLICATION_NAME, keepAlive: true });
    client.on('error', () => undefined);
    client.once('end', () => {
      if (current === client) {
        current = undefined;
        kept = undefined;
      }
    });
    const connecting = client.connect().then(
      () => client,
      (error: unknown) => {
        drop(client);
        throw error;
      },
    );
    return { client, connecting };
  };
  /** Asks until `end` on the kept connection (one is opened and kept if there is none), or on a new one when `fresh`. */
  const attempt = (request: ProbeRequest, end: number, fresh: boolean): Attempt => {
    if (closed) return { client: undefined, result: Promise.reject(new Error('the session is closed')) };
    let client: Client;
    let connecting: Promise<Client>;
    if (!fresh && kept !== undefined && current !== undefined) ({ client, connecting } = { client: current, connecting: kept });
    else {
      ({ client, connecting } = connect());
      if (!fresh) keep(client, connecting);
    }
    const timely = <T>(promise: Promise<T>, what: string): Promise<T> =>
      withDeadline(promise, Math.max(1, Math.ceil(end - clock.monotonicNow())), what, { clock, onLate: () => drop(client) });
    const asking = async (): Promise<{ client: Client; finding: BackendFinding }> => {
      const connected = await timely(connecting, 'the login');
      try {
        return { client: connected, finding: await timely(ask(connected, request), 'the question') };
      } catch (error) {
        drop(connected);
        throw error;
      }
    };
    return { client, result: asking() };
  };
  /**
   * A connection kept from an earlier probe asks for the whole probe time (a live but overloaded
   * server may answer it late); from half of it (or once it failed) a new connection asks as well,
   * in case the kept one went stale (a NAT or firewall forgot it). The first answer counts and the
   * other connection is dropped; the new one, when it answered, is kept instead.
   */
  const race = (request: ProbeRequest, started: number, end: number): Promise<Answer> =>
    new Promise<Answer>((resolve) => {
      const millis = request.deadlineMillis;
      const first = attempt(request, end, false);
      let second: Attempt | undefined;
      let keptFailed: BackendFinding | undefined;
      let newFailed: BackendFinding | undefined;
      let done = false;
      const settle = (winner: Attempt, won: Answer): void => {
        let answer = won;
        if (done) return;
        done = true;
        cancel();
        if (winner === first) drop(second?.client);
        else {
          // The stale kept connection goes; the new one is kept unless a probe racing at the same
          // time kept its own since (then this one is closed once used: kept, it would leak, and
          // dropping the other's could cut a probe still asking on it).
          const replaceable = current === undefined || current === first.client;
          drop(first.client);
          if (replaceable) keep(answer.client!, Promise.resolve(answer.client!));
          else answer = { ...answer, closeAfterUse: true };
        }
        resolve(answer);
      };
      const bothFailed = (): void => {
        if (done || keptFailed === undefined || newFailed === undefined) return;
        done = true;
        resolve({ finding: afterKept(newFailed, keptFailed) });
      };
      const half = Math.round(millis / 2);
      /** `budget`: the new connection's time as messages name it (the half, or what the kept one's failure left). */
      const askNew = (budget: number): void => {
        if (done || second !== undefined) return;
        cancel();
        const attempting = attempt(request, end, true);
        second = attempting;
        attempting.result.then(
          (answer) => settle(attempting, answer),
          (error: unknown) => {
            newFailed = failure(error, budget);
            bothFailed();
          },
        );
      };
      const cancel = clock.setTimeout(() => askNew(millis - half), Math.max(1, started + half - clock.monotonicNow()));
      first.result.then(
        (answer) => settle(first, answer),
        (error: unknown) => {
          keptFailed = failure(error, millis);
          askNew(Math.max(1, Math.round(end - clock.monotonicNow())));
          bothFailed();
        },
      );
    });
  return {
    async probe(request, decide) {
      const started = clock.monotonicNow();
      const end = started + request.deadlineMillis;
      let answer: Answer;
      if (kept !== undefined && !closed) answer = await race(request, started, end);
      else answer = await attempt(request, end, false).result.catch((error: unknown) => ({ finding: failure(error, request.deadlineMillis) }));
      const { client: probe, finding } = answer;
      if (decide(finding) && probe !== undefined && finding.kind !== 'unreachable' && finding.kind !== 'refused') {
        const terminating = probe.query('select pg_terminate_backend($1)', [request.pid]);
        await withDeadline(terminating, Math.max(1, Math.ceil(end - clock.monotonicNow())), 'the termination', { clock, onLate: () => drop(probe) }).catch(() => undefined);
      }
      if (answer.closeAfterUse === true) drop(probe);
      if (closed) this.close();
    },
    close() {
      closed = true;
      const client = current;
      current = undefined;
      kept = undefined;
      if (client !== undefined) void withDeadline(client.end(), CLOSE_MILLIS, 'the probe close', { clock, onLate: () => destroySocket(client) }).catch(() => undefined);
    },
  };
}

/**
 * What a failed probe says: an error the server answered with (a SQLSTATE) says it is alive;
 * anything else (no answer in time, no connection), that it is not. `millis`: the time the probe
 * had (as messages name it: the deadline, not what was left of it by the time the timer was set).
 */
function failure(error: unknown, millis: number): BackendFinding {
  const code = (error as { code?: unknown } | null)?.code;
  const message = redactText(error instanceof Error ? error.message : String(error));
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof (error as { severity?: unknown }).severity === 'string') return { kind: 'refused', why: `${message} (${code})` };
  return { kind: 'unreachable', why: error instanceof DeadlineError ? `no answer to ${error.what} in ${millis} ms` : message };
}

/** `finding` of a new connection, asked after the kept one failed with `kept`: it says so. */
function afterKept(finding: BackendFinding, kept: BackendFinding): BackendFinding {
  const keptWhy = kept.kind === 'unreachable' || kept.kind === 'refused' ? kept.why : kept.kind;
  if (finding.kind === 'unreachable') return { ...finding, kept: keptWhy };
  if (finding.kind === 'refused') return { ...finding, why: `${finding.why}, on a new connection (its kept probe connection: ${keptWhy})` };
  return finding;
}

interface ActivityRow {
  readonly state: string | null;
  readonly type: string | null;
  readonly event: string | null;
  readonly lockMillis: number | null;
  readonly lockType: string | null;
  readonly table: string | null;
}

async function ask(probe: Client, request: ProbeRequest): Promise<BackendFinding> {
  // waitstart (PostgreSQL 14+) read through to_jsonb, so older servers answer too (null there).
  const { rows } = await probe.query<ActivityRow>(
    `select a.state, a.wait_event_type as type, a.wait_event as event,
            (select (extract(epoch from clock_timestamp() - min((to_jsonb(l) ->> 'waitstart')::timestamptz)) * 1000)::float8
               from pg_locks l where l.pid = a.pid and not l.granted) as "lockMillis",
            (select l.locktype from pg_locks l where l.pid = a.pid and not l.granted limit 1) as "lockType",
            (select l.relation::regclass::text from pg_locks l where l.pid = a.pid and l.relation is not null and (not l.granted or l.locktype = 'tuple')
              order by l.granted limit 1) as table
       from pg_stat_activity a where a.pid = $1`,
    [request.pid],
  );
  const row = rows[0];
  if (row === undefined) return { kind: 'gone' };
  // With track_activities off the state reads 'disabled' but the wait event is still shown (ClientRead
  // when idle, none on the CPU); another role's backend shows neither (null).
  const known = row.state !== null && row.state !== 'disabled';
  if (known && row.state!.startsWith('idle')) return { kind: 'idle', state: row.state! };
  if (known && row.state !== 'active') return { kind: 'working', waitEvent: row.state! };
  if (row.type === 'Client') {
    if (!known && row.event === 'ClientRead') return { kind: 'idle', state: `waiting for a statement (ClientRead; its state hidden: ${row.state ?? 'another role'})` };
    return { kind: 'client', waitEvent: row.event ?? 'Client' };
  }
  if (row.type !== 'Lock') {
    if (row.state === null && row.type === null) return { kind: 'refused', why: `its state is hidden (another role) and so is its wait` };
    return { kind: 'working', waitEvent: row.event ?? (known ? 'on CPU' : `on CPU (its state hidden: ${row.state})`) };
  }
  // Waiting for older transactions to end (CREATE INDEX CONCURRENTLY and its kin): no statement
  // queues behind such a wait, so it is work however long, not a lock wait to bound.
  if (row.lockType === 'virtualxid') return { kind: 'working', waitEvent: 'waiting for older transactions to end (Lock:virtualxid)' };
  const waitedMillis = row.lockMillis ?? undefined;
  const lock = lockPhrase(row.lockType ?? row.event, row.table);
  const finding = { kind: 'lock' as const, waitedMillis, table: row.table ?? undefined, lock };
  if ((waitedMillis ?? 0) < request.blockersAfterMillis) return finding;
  return { ...finding, blockers: await backendBlockers(probe, request.pid) };
}

/** `a lock on orders`, `a lock on rows of orders`, `an advisory lock`, … */
function lockPhrase(lockType: string | null, table: string | null): string {
  if (lockType === 'advisory') return 'an advisory lock';
  if (lockType === 'relation' || lockType === 'extend') return table === null ? 'a lock on a table' : `a lock on ${table}`;
  if (lockType === 'tuple' || lockType === 'transactionid') return table === null ? 'a lock on rows' : `a lock on rows of ${table}`;
  return table === null ? `a lock (${lockType ?? 'unknown'})` : `a lock on ${table}`;
}

/** A finding as the error's text: "a new connection to it failed too (no answer to the login in 1000 ms): …". */
export function describeFinding(finding: BackendFinding, pid: number): string {
  switch (finding.kind) {
    case 'unreachable':
      return (
        (finding.kept === undefined ? '' : `its kept probe connection got no answer (${finding.kept}); `) +
        `a new connection to it failed too (${finding.why}): the shard is frozen, overloaded or unreachable`
      );
    case 'gone':
      return `its backend (pid ${pid}) no longer exists: the connection to it was lost`;
    case 'idle':
      return `its backend (pid ${pid}) is ${finding.state}, its answer never came: the connection to it was lost`;
    case 'client':
      return `its backend (pid ${pid}) waits on the connection (${finding.waitEvent}) while the mover waits on it: the connection was lost`;
    case 'refused':
      return `the shard answered but could not be asked about its backend (pid ${pid}): ${finding.why}`;
    case 'lock':
    case 'working':
      return `its backend (pid ${pid}) is still at work`;
  }
}
