/**
 * `COPY … TO STDOUT` through a pipeline, safe to fail. pg-copy-streams 7's reader has no destroy
 * handling: when a later stage fails, the pipeline destroys the reader, but the client's socket
 * stays paused and the client never sees the end of the COPY, so its next statement (a rollback
 * of the repeatable-read snapshot the scan ran in) would wait forever while the backend holds the
 * snapshot, blocked on a full socket. A failed scan therefore drops the session's socket: the
 * backend ends (its transaction rolls back), later statements on the client fail at once, and
 * the mover's context opens a new session when it needs one. Both directions are watched
 * (`shard-deadlines.ts`): a shard that stops sending, or stops taking what it is sent, for the
 * idle deadline fails the COPY with `ShardSilentError` naming it.
 */
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import type { Client } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { destroySocket } from '../server-client';
import { watchCopy } from './shard-deadlines';

/**
 * Streams `sql` (a `COPY … TO STDOUT`) from `client` through `stages`; on failure the client is
 * dropped (never reused) and the error rethrown. The shard may stay silent for `idleMillis` at
 * most (default: the session's `copyIdleTimeoutMillis`) while the stages wait for it.
 */
export async function copyOut(client: Client, sql: string, stages: readonly [...(NodeJS.ReadWriteStream | Readable | Writable)[], Writable], idleMillis?: number): Promise<void> {
  const reader = client.query(copyTo(sql));
  const watch = watchCopy(client, reader, 'out', idleMillis);
  try {
    await pipeline([reader, ...stages]);
  } catch (error) {
    destroySocket(client);
    throw watch.error() ?? error;
  }
}

/**
 * `COPY … FROM STDIN` on `target`, as a stream to pipe rows into. It listens for its own errors:
 * when the scan feeding it fails before the pipe is set up (a lock timeout, a dropped source), the
 * caller's rollback drops the target's connection and the stream reports that with nobody
 * listening, which would crash the process; the scan's error is the one the caller throws. A
 * target that takes nothing of what it is sent for `idleMillis` (default: the session's
 * `copyIdleTimeoutMillis`) fails the stream, and so the pipeline, with `ShardSilentError`.
 */
export function copyIn(target: Client, sql: string, idleMillis?: number): Writable {
  const into = target.query(copyFrom(sql));
  into.on('error', () => undefined);
  watchCopy(target, into, 'in', idleMillis);
  return into;
}
