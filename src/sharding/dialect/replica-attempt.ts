/**
 * One round trip of a read on a replica under the read deadline (`readTimeoutMillis`): a whole
 * statement (checkout included), or a stream's step (checkout and first chunk, a further chunk,
 * closing the cursor). A replica that passes the deadline or cannot be reached leaves rotation at
 * once and its client is closed: it may never answer, so it is never reused, and nothing waits
 * on it any longer. Every attempt counts for the replica's pending reads and its strategy.
 */
import type { ServerSpec, Shard } from '../../cluster/topology';
import type { Clock } from '../../kernel/clock';
import { classifyReadFailure, type ReadOutcome } from '../../replication/replica-failover';
import type { HeldClients } from './held-clients';

/** What an attempt asks of the replica router. */
export interface ReplicaAttemptTarget {
  readonly options: { readonly readTimeoutMillis: number };
  /** Starts a read on a replica; its end tells the replica's progress and the strategy how it went. */
  startRead(shard: Shard, server: ServerSpec): { end(outcome: ReadOutcome): void };
  /** Takes a replica out of read service at once. */
  markFailed(shard: Shard, server: ServerSpec, problem: string): void;
}

/** How an attempt ended: its value, or why not (`statement`: the statement's own error, the replica is fine). */
export type Attempt<T> = { readonly value: T } | { readonly outcome: Exclude<ReadOutcome, 'ok'>; readonly error: unknown };

/** Whether a failed attempt gave up the replica's client (closed, never to be used again). */
export function clientDropped(outcome: Exclude<ReadOutcome, 'ok'>): boolean {
  return outcome === 'deadline' || outcome === 'unreachable' || outcome === 'busy';
}

/**
 * Runs `work` (a round trip on `server`'s held client) under the read deadline. Never rejects:
 * the outcome says what happened. Past the deadline, `work` is abandoned (its late result ignored).
 */
export function attemptOnReplica<T>(clock: Clock, clients: HeldClients, replicas: ReplicaAttemptTarget, shard: Shard, server: ServerSpec, work: () => Promise<T>): Promise<Attempt<T>> {
  const timeoutMillis = replicas.options.readTimeoutMillis;
  const read = replicas.startRead(shard, server);
  return new Promise<Attempt<T>>((resolve) => {
    let settled = false;
    const cancel = clock.setTimeout(() => {
      if (settled) return;
      settled = true;
      read.end('deadline');
      const error = new Error(`no answer to a read within readTimeoutMillis (${timeoutMillis} ms)`);
      replicas.markFailed(shard, server, error.message);
      clients.drop(server.url);
      resolve({ outcome: 'deadline', error });
    }, timeoutMillis);
    work().then(
      (value) => {
        if (settled) return;
        settled = true;
        cancel();
        read.end('ok');
        resolve({ value });
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        cancel();
        const outcome = classifyReadFailure(error);
        read.end(outcome);
        if (outcome === 'unreachable') replicas.markFailed(shard, server, (error as Error)?.message ?? String(error));
        if (outcome === 'unreachable' || outcome === 'busy') clients.drop(server.url);
        resolve({ outcome, error });
      },
    );
  });
}
