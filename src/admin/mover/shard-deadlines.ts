/**
 * Deadlines of every statement a mover, plan or `verify` session runs on a shard, for a shard that
 * stops answering mid-statement (frozen, a hung host, a dropped network path): such a shard
 * enforces no `statement_timeout` and never closes the socket, so the mover keeps time itself. A
 * deadline does not measure how long the work takes, only how long the shard shows no sign of life:
 * past it the session's backend is probed over a probe connection of the session's (`shard-watchdog.ts`), and the
 * session is dropped with {@link ShardSilentError} only when the shard is silent (or the path to
 * it dropped), with {@link ShardLockError} naming who keeps a lock it waits for, and let be when
 * it is at work (the end of a COPY, a delete of a key with many rows).
 * - Each statement of a session ({@link registerShardSession} wraps its `query`): probed after
 *   `statementTimeoutMillis` without an answer, or a byte of one (a large answer the mover is
 *   still reading is progress).
 * - A COPY ({@link watchCopy}): probed after `copyIdleTimeoutMillis` without a byte read (or taken,
 *   on the target side) while the mover waits on it; time the mover holds the stream back (a
 *   throttle, the pacing) does not count.
 * Each session carries its shard's name, URL, deadlines and clock, set when it is opened, and its
 * backend's pid as the server tells it ({@link learnBackendPid}: a pooler hands out pids of its own).
 */
import type { Readable, Writable } from 'node:stream';
import type { Client, ClientConfig, QueryResult } from 'pg';
import { systemClock, type Clock } from '../../kernel/clock';
import { withDeadline } from '../../kernel/deadline';
import { destroySocket } from '../server-client';
import type { ShardLockError, ShardSilentError } from './mover-errors';
import { LOCK_WAIT_MILLIS, statementStart } from './lock-blockers';
import { ownLockTimeoutOfThisStatement } from './shard-queries';
import { watchWait, type WatchedSession } from './shard-watchdog';
import { backendProber } from './shard-liveness';

export type { ShardQueries } from './shard-queries';

/** The client-side deadlines of a shard session's statements. */
export interface ShardDeadlines {
  /** A statement without an answer for this long has its shard probed: silent, it fails; at work, it goes on. */
  readonly statementTimeoutMillis: number;
  /** A COPY during which the shard sends nothing (or takes none of what it is sent) for this long while the mover waits on it has its shard probed. */
  readonly copyIdleTimeoutMillis: number;
}

/** Defaults of {@link ShardDeadlines}: ten thousand times a paged statement's ~3 ms; a minute of silence in a COPY. */
export const SHARD_DEADLINE_DEFAULTS: ShardDeadlines = Object.freeze({ statementTimeoutMillis: 30_000, copyIdleTimeoutMillis: 60_000 });

/** Who a session is, for its deadlines. */
export interface ShardSessionIdentity {
  /** The shard's name (as the topology names it) for errors. */
  readonly shard: string;
  /** Its URL: probes connect with it. */
  readonly url: string;
  readonly deadlines?: Partial<ShardDeadlines>;
  readonly clock?: Clock;
}

interface SessionDeadlines extends ShardDeadlines {
  readonly session: WatchedSession;
}

const sessions = new WeakMap<Client, SessionDeadlines>();
/** Each session's backend pid, as its server told it. */
const backendPids = new WeakMap<Client, number>();

/** Names `client`'s shard, sets its deadlines (the defaults for those not given) and puts every statement of it under them. */
export function registerShardSession(client: Client, identity: ShardSessionIdentity): void {
  const config: ClientConfig = { connectionString: identity.url };
  sessions.set(client, { ...SHARD_DEADLINE_DEFAULTS, ...identity.deadlines, session: watchedSession(client, identity.shard, identity.clock ?? systemClock, () => config) });
  guardStatements(client);
}

function watchedSession(client: Client, shard: string, clock: Clock, probeConfig: () => ClientConfig): WatchedSession {
  const prober = backendProber(probeConfig, clock);
  // The probe connection lives as long as the session.
  client.once('end', () => prober.close());
  return { shard, clock, lockWaitMillis: LOCK_WAIT_MILLIS, prober, pid: () => backendPids.get(client) };
}

/**
 * Asks the server for `client`'s backend pid (`pg_backend_pid()`), which its deadlines' probes ask
 * about and end: behind a session pooler the pid of the login's BackendKeyData is the pooler's.
 * Within `millis` on the session's clock, else the socket is dropped and this rejects.
 */
export async function learnBackendPid(client: Client, millis: number): Promise<void> {
  const pending = rawQuery(client)('select pg_backend_pid() as pid') as Promise<QueryResult<{ pid: number }>>;
  const { rows } = await withDeadline(pending, millis, 'the backend pid', { clock: sessionClock(client), onLate: () => destroySocket(client) });
  const pid = rows[0]?.pid;
  if (typeof pid === 'number') backendPids.set(client, pid);
}

/** `client`'s deadlines: those registered, else the defaults, its server's address and its own connection parameters (its probe connection then closes with it). */
function deadlinesOf(client: Client): SessionDeadlines {
  const known = sessions.get(client);
  if (known !== undefined) return known;
  const params = (client as unknown as { connectionParameters?: ClientConfig }).connectionParameters ?? {};
  const config: ClientConfig = { host: params.host, port: params.port, user: params.user, password: params.password, database: params.database, ssl: params.ssl };
  const made = { ...SHARD_DEADLINE_DEFAULTS, session: watchedSession(client, `${client.host}:${client.port}/${client.database ?? ''}`, systemClock, () => config) };
  sessions.set(client, made);
  return made;
}

/** The clock `client`'s session was given (the system clock when none was). */
export function sessionClock(client: Client): Clock {
  return deadlinesOf(client).session.clock;
}

/** The statement deadline of `client`'s session (a paged scan's range and a catch-up's pipe pass it to {@link watchCopy}). */
export function statementTimeoutOf(client: Client): number {
  return deadlinesOf(client).statementTimeoutMillis;
}

type AnyQuery = (...args: unknown[]) => unknown;
const raw = new WeakMap<Client, AnyQuery>();

/**
 * Puts every promise-returning statement of `client` under its session's statement deadline. A
 * submittable (a COPY stream: {@link watchCopy} watches it) and the callback form pass as they are.
 */
function guardStatements(client: Client): void {
  if (raw.has(client)) return;
  const query = client.query.bind(client) as AnyQuery;
  raw.set(client, query);
  const guarded: AnyQuery = (...args) => {
    const first = args[0] as { submit?: unknown } | null | undefined;
    if (typeof first?.submit === 'function' || typeof args.at(-1) === 'function') return query(...args);
    const text = typeof first === 'string' ? first : (first as { text?: unknown } | null | undefined)?.text;
    return underDeadline(client, query(...args) as Promise<QueryResult>, typeof text === 'string' ? text : '', ownLockTimeoutOfThisStatement());
  };
  (client as unknown as { query: AnyQuery }).query = guarded;
}

/** `client`'s `query` as pg has it, without the deadline (a rollback that has a deadline of its own). */
export function rawQuery(client: Client): AnyQuery {
  return raw.get(client) ?? (client.query.bind(client) as AnyQuery);
}

function underDeadline<T>(client: Client, pending: Promise<T>, text: string, ownLockTimeoutMillis: number | undefined): Promise<T> {
  const d = deadlinesOf(client);
  const socket = socketOf(client);
  // Progress: bytes of the answer read (a large one takes the mover a while to read), or of the statement taken.
  let seen = socketProgress(socket);
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const stop = watchWait(d.session, {
      what: () => `a statement ("${statementStart(text)}")`,
      millis: d.statementTimeoutMillis,
      option: 'statementTimeoutMillis',
      ownLockTimeoutMillis,
      ...(socket === undefined
        ? {}
        : {
            stalled: () => {
              const current = socketProgress(socket);
              const moved = current !== seen;
              seen = current;
              return !moved;
            },
          }),
      fail: (error) => {
        if (settled) return;
        settled = true;
        destroySocket(client);
        reject(error);
      },
    });
    pending.then(
      (value) => {
        if (settled) return;
        settled = true;
        stop();
        resolve(value);
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        stop();
        reject(error as Error);
      },
    );
  });
}

/** A COPY's watch; `error()` is the error it failed the stream with, if it did. */
export interface CopyWatch {
  error(): ShardSilentError | ShardLockError | undefined;
}

interface SocketLike {
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly readableLength: number;
  readonly writableLength: number;
}

function socketOf(client: Client): SocketLike | undefined {
  return (client as unknown as { connection?: { stream?: SocketLike } }).connection?.stream;
}

/** Bytes read from the socket, and bytes the kernel took from it. */
function socketProgress(socket: SocketLike | undefined): string {
  return socket === undefined ? '' : `${socket.bytesRead}/${socket.bytesWritten - socket.writableLength}`;
}

/**
 * Watches `stream`, a COPY on `client` (`'out'`: `COPY … TO STDOUT`, read by the mover; `'in'`:
 * `COPY … FROM STDIN`, written by it), until it ends: when the shard makes no progress for
 * `idleMillis` (default the session's `copyIdleTimeoutMillis`; a paged scan's range and a
 * catch-up's pipe pass `statementTimeoutMillis`) while the mover waits on it, the shard is probed
 * (`shard-watchdog.ts`); a silent shard or a lock waited for too long drops the session and
 * destroys the stream with the error. The mover waits on a COPY out while it is ready to read and
 * nothing is buffered unread; on a COPY in while what it wrote waits to be sent or taken, or the
 * COPY's end waits for the shard's answer (its AFTER triggers, its checks). Progress: bytes read
 * from the socket, and bytes the kernel took from it (`bytesWritten − writableLength`). A client
 * without a socket to measure is probed at each `idleMillis` of waiting all the same.
 */
export function watchCopy(client: Client, stream: Readable | Writable, direction: 'out' | 'in', idleMillis?: number): CopyWatch {
  const d = deadlinesOf(client);
  const socket = socketOf(client);
  let failed: ShardSilentError | ShardLockError | undefined;
  const reader = stream as Readable;
  const writer = stream as Writable;
  const waiting =
    direction === 'out'
      ? (): boolean => !reader.isPaused() && !reader.readableEnded && (socket?.readableLength ?? 0) === 0
      : (): boolean => (socket?.writableLength ?? 0) > 0 || writer.writableLength > 0 || (writer.writableEnded && !writer.writableFinished);
  const progress = (): string => socketProgress(socket);
  let seen = progress();
  const stop = watchWait(d.session, {
    what: () => (direction === 'out' ? 'a COPY it reads' : writer.writableEnded ? 'the end of a COPY it writes' : 'a COPY it writes'),
    millis: idleMillis ?? d.copyIdleTimeoutMillis,
    option: idleMillis === undefined ? 'copyIdleTimeoutMillis' : 'statementTimeoutMillis',
    stalled: () => {
      const current = progress();
      const moved = current !== seen;
      seen = current;
      return !moved && waiting();
    },
    fail: (error) => {
      failed = error;
      stream.destroy(error); // first, so the stream's consumers see this error rather than the dropped socket's
      destroySocket(client);
    },
  });
  stream.once('close', stop);
  stream.once('error', stop);
  stream.once(direction === 'out' ? 'end' : 'finish', stop);
  return { error: () => failed };
}
