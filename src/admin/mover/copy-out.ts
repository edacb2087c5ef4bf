/**
 * `COPY … TO STDOUT` through a pipeline, safe to fail. pg-copy-streams 7's reader has no destroy
 * handling: when a later stage fails, the pipeline destroys the reader, but the client's socket
 * stays paused and the client never sees the end of the COPY, so its next statement (a rollback
 * of the repeatable-read snapshot the scan ran in) would wait forever while the backend holds the
 * snapshot, blocked on a full socket. A failed scan therefore drops the session's socket: the
 * backend ends (its transaction rolls back), later statements on the client fail at once, and
 * the mover's context opens a new session when it needs one. Both directions are watched
 * (`shard-deadlines.ts`): a shard that stops sending, or stops taking what it is sent, for the
 * idle deadline is probed; a silent one fails the COPY with `ShardSilentError` naming it, one
 * waiting for a lock too long with `ShardLockError` naming who keeps it, one at work goes on.
 */
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import type { Client } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { destroySocket } from '../server-client';
import { watchCopy, type CopyWatch } from './shard-deadlines';
import { ShardLockError, ShardSilentError } from './mover-errors';

type Stages = readonly [...(NodeJS.ReadWriteStream | Readable | Writable)[], Writable];

/** The watch of each {@link copyIn} stream. */
const inWatches = new WeakMap<object, CopyWatch>();

/**
 * The error a failed COPY pipeline reports: a deadline's own (a shard found silent, or waiting on a
 * lock, by the watch of a COPY out or of a {@link copyIn} stage) rather than what dropping the
 * session made of it (`Connection terminated unexpectedly`: a COPY in destroyed before the shard
 * took it reports the dropped socket, not the error it was destroyed with).
 */
export function copyFailure(error: unknown, stages: Stages): unknown {
  if (error instanceof ShardSilentError || error instanceof ShardLockError) return error;
  for (const stage of stages) {
    const watched = inWatches.get(stage)?.error();
    if (watched !== undefined) return watched;
  }
  return error;
}

/**
 * Streams `sql` (a `COPY … TO STDOUT`) from `client` through `stages`; on failure the client is
 * dropped (never reused) and the error rethrown. The shard may stay silent for `idleMillis` at
 * most (default: the session's `copyIdleTimeoutMillis`) while the stages wait for it. `signal`
 * aborted: the stream stops at once, failing with its reason.
 */
export async function copyOut(client: Client, sql: string, stages: Stages, idleMillis?: number, signal?: AbortSignal): Promise<void> {
  const reader = client.query(copyTo(sql));
  const watch = watchCopy(client, reader, 'out', idleMillis);
  try {
    await pipeline([reader, ...stages], signal === undefined ? {} : { signal });
  } catch (error) {
    destroySocket(client);
    throw stoppedBy(signal) ?? watch.error() ?? copyFailure(error, stages);
  }
}

/** `signal`'s reason once it was aborted (a stream stopped on purpose fails with it, not with what stopping it made of the pipe). */
export function stoppedBy(signal: AbortSignal | undefined): unknown {
  return signal?.aborted === true ? signal.reason : undefined;
}

/**
 * `COPY … FROM STDIN` on `target`, as a stream to pipe rows into. It listens for its own errors:
 * when the scan feeding it fails before the pipe is set up (a lock timeout, a dropped source), the
 * caller's rollback drops the target's connection and the stream reports that with nobody
 * listening, which would crash the process; the scan's error is the one the caller throws. A
 * target that takes nothing of what it is sent, or does not finish the COPY, for `idleMillis`
 * (default: the session's `copyIdleTimeoutMillis`) is probed: silent, or waiting for a lock too
 * long, it fails the stream, and so the pipeline; at work (its triggers, its checks) it goes on.
 */
export function copyIn(target: Client, sql: string, idleMillis?: number): Writable {
  const into = target.query(copyFrom(sql));
  into.on('error', () => undefined);
  inWatches.set(into, watchCopy(target, into, 'in', idleMillis));
  return into;
}
