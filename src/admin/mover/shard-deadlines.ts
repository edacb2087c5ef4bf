/**
 * Deadlines of the mover's and `verify`'s statements on a shard that stops answering mid-statement
 * (frozen, a hung host, a dropped network path): such a shard enforces no `statement_timeout` and
 * never closes the socket, so the mover keeps time itself. Its work has two shapes, so two
 * deadlines, both client-side, both ending in {@link ShardSilentError} naming the shard, the
 * session dropped (its socket destroyed; the backend's transaction ends with it):
 * - a statement that is short by design (a paged scan's range, ~3 ms of work; a catch-up or
 *   clean-up statement) must answer within `statementTimeoutMillis`;
 * - a COPY may run as long as it keeps moving (a table read by one statement: partitioned, …):
 *   it fails only when the shard sends nothing (or takes none of what the mover sends it) for
 *   `copyIdleTimeoutMillis` while the mover waits on it. Time the mover itself holds the stream
 *   back (a throttle, the pacing) does not count.
 * Each session carries its shard's name and deadlines, set when it is opened ({@link setShardDeadlines}).
 */
import type { Readable, Writable } from 'node:stream';
import type { Client, QueryResult, QueryResultRow } from 'pg';
import { systemClock, type Cancel, type Clock } from '../../kernel/clock';
import { DeadlineError, withDeadline } from '../../kernel/deadline';
import { destroySocket } from '../server-client';
import { ShardSilentError } from './mover-errors';

/** The client-side deadlines of a shard session's statements. */
export interface ShardDeadlines {
  /** A statement short by design (a paged scan's range, a catch-up or clean-up statement) fails when not answered within this. */
  readonly statementTimeoutMillis: number;
  /** A COPY fails when the shard sends nothing (or takes none of what it is sent) for this long while the mover waits on it. */
  readonly copyIdleTimeoutMillis: number;
}

/** Defaults of {@link ShardDeadlines}: ten thousand times a paged statement's ~3 ms; a minute of silence in a COPY. */
export const SHARD_DEADLINE_DEFAULTS: ShardDeadlines = Object.freeze({ statementTimeoutMillis: 30_000, copyIdleTimeoutMillis: 60_000 });

interface SessionDeadlines extends ShardDeadlines {
  readonly shard: string;
  readonly clock: Clock;
}

const sessions = new WeakMap<Client, SessionDeadlines>();

/** Names `client`'s shard (as the topology does) and sets its deadlines (the defaults for those not given). */
export function setShardDeadlines(client: Client, shard: string, deadlines: Partial<ShardDeadlines> = {}, clock: Clock = systemClock): void {
  sessions.set(client, { ...SHARD_DEADLINE_DEFAULTS, ...deadlines, shard, clock });
}

/** `client`'s shard and deadlines: those set, else the defaults and its server's address. */
function deadlinesOf(client: Client): SessionDeadlines {
  return sessions.get(client) ?? { ...SHARD_DEADLINE_DEFAULTS, shard: `${client.host}:${client.port}/${client.database ?? ''}`, clock: systemClock };
}

/** The statements a helper runs, each under the session's statement deadline (see {@link timed}). */
export interface ShardQueries {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/** `client` with every statement under its session's `statementTimeoutMillis` (for helpers that take a {@link ShardQueries}). */
export function timed(client: Client): ShardQueries {
  return { query: (text, values) => timedQuery(client, text, values) };
}

/** One statement on `client` (short by design) within its session's `statementTimeoutMillis`; past it the session is dropped. */
export async function timedQuery<R extends QueryResultRow = QueryResultRow>(client: Client, text: string, values?: unknown[]): Promise<QueryResult<R>> {
  const d = deadlinesOf(client);
  try {
    return await withDeadline(client.query<R>(text, values), d.statementTimeoutMillis, 'a statement', { clock: d.clock, onLate: () => destroySocket(client) });
  } catch (error) {
    if (error instanceof DeadlineError) throw new ShardSilentError(d.shard, 'a statement', d.statementTimeoutMillis, 'statementTimeoutMillis');
    throw error;
  }
}

/** A COPY's watch; `error()` is the {@link ShardSilentError} it failed the stream with, if it did. */
export interface CopyWatch {
  error(): ShardSilentError | undefined;
}

/**
 * Watches `stream`, a COPY on `client` (`'out'`: `COPY … TO STDOUT`, read by the mover; `'in'`:
 * `COPY … FROM STDIN`, written by it), until it ends: when the shard makes no progress for
 * `idleMillis` (default the session's `copyIdleTimeoutMillis`; a paged scan's range passes
 * `statementTimeoutMillis`) while the mover waits on it, the session is dropped and the stream
 * destroyed with a {@link ShardSilentError}. The mover waits on a COPY out while it is ready to read
 * and nothing is buffered unread; on a COPY in while bytes it wrote wait to be taken, or the COPY's
 * end waits for the shard's answer.
 */
export function watchCopy(client: Client, stream: Readable | Writable, direction: 'out' | 'in', idleMillis?: number): CopyWatch {
  const d = deadlinesOf(client);
  const millis = idleMillis ?? d.copyIdleTimeoutMillis;
  const socket = (client as unknown as { connection?: { stream?: { bytesRead: number; readableLength: number; writableLength: number } } }).connection?.stream;
  let failed: ShardSilentError | undefined;
  if (socket === undefined) return { error: () => failed };
  const waiting =
    direction === 'out'
      ? (): boolean => {
          const reader = stream as Readable;
          return !reader.isPaused() && !reader.readableEnded && socket.readableLength === 0;
        }
      : (): boolean => {
          const writer = stream as Writable;
          return socket.writableLength > 0 || (writer.writableEnded && !writer.writableFinished);
        };
  const progress = (): string => `${socket.bytesRead}/${socket.writableLength}`;
  let seen = progress();
  let since = d.clock.monotonicNow();
  let cancel: Cancel = () => undefined;
  let done = false;
  const interval = Math.max(10, Math.min(1000, millis / 10));
  const tick = (): void => {
    if (done) return;
    const now = d.clock.monotonicNow();
    const current = progress();
    if (current !== seen || !waiting()) {
      seen = current;
      since = now;
    } else if (now - since >= millis) {
      done = true;
      failed = new ShardSilentError(d.shard, direction === 'out' ? 'a COPY it reads' : 'a COPY it writes', millis, idleMillis === undefined ? 'copyIdleTimeoutMillis' : 'statementTimeoutMillis');
      stream.destroy(failed); // first, so the stream's consumers see this error rather than the dropped socket's
      destroySocket(client);
      return;
    }
    cancel = d.clock.setTimeout(tick, interval);
  };
  cancel = d.clock.setTimeout(tick, interval);
  const stop = (): void => {
    done = true;
    cancel();
  };
  stream.once('close', stop);
  stream.once('error', stop);
  stream.once(direction === 'out' ? 'end' : 'finish', stop);
  return { error: () => failed };
}

/** The statement deadline of `client`'s session (a paged scan's range passes it to {@link watchCopy}). */
export function statementTimeoutOf(client: Client): number {
  return deadlinesOf(client).statementTimeoutMillis;
}
