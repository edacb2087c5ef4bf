/**
 * One round trip of a read on a replica under the read deadline (`readTimeoutMillis`): a whole
 * statement, or a stream's step (checkout and first chunk, a further chunk, closing the cursor).
 * The wait for a pooled client and the wait for the server are told apart: each has the deadline.
 * A checkout still queued at its deadline while the replica keeps answering (reads, or its checks
 * on their own pool) is a full pool (`busy`): the read runs elsewhere and the replica stays
 * in service. A replica that passes the deadline otherwise (no answer, or no connection) or cannot be reached leaves rotation at
 * once and its client is closed: it may never answer, so it is never reused, and nothing waits on
 * it any longer. Every attempt that reached the server counts for the replica's pending reads and
 * its strategy.
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
  /**
   * Whether a checkout of the replica's pool begun at monotonic `since` and still waiting is the
   * pool's fault, not the server's: the replica answered a read, or passed a check, since.
   */
  poolContended(shard: Shard, server: ServerSpec, since: number): boolean;
}

/** How an attempt ended: its value, or why not (`statement`: the statement's own error, the replica is fine). */
export type Attempt<T> = { readonly value: T } | { readonly outcome: Exclude<ReadOutcome, 'ok'>; readonly error: unknown };

/** Whether a failed attempt gave up the replica's client (closed, never to be used again). */
export function clientDropped(outcome: Exclude<ReadOutcome, 'ok'>): boolean {
  return outcome === 'deadline' || outcome === 'unreachable' || outcome === 'busy';
}

/**
 * Runs `work` (a round trip on `server`'s held client) under the read deadline. With `checkout`
 * (the held client's checkout, which `work` then uses), the checkout has the deadline first and
 * `work` gets a fresh one once the client arrived. Never rejects: the outcome says what happened.
 * Past a deadline, `work` is abandoned (its late result ignored).
 */
export function attemptOnReplica<T>(
  clock: Clock,
  clients: HeldClients,
  replicas: ReplicaAttemptTarget,
  shard: Shard,
  server: ServerSpec,
  work: () => Promise<T>,
  checkout?: () => Promise<unknown>,
): Promise<Attempt<T>> {
  const timeoutMillis = replicas.options.readTimeoutMillis;
  const startedAt = clock.monotonicNow();
  return new Promise<Attempt<T>>((resolve) => {
    let settled = false;
    let read: { end(outcome: ReadOutcome): void } | undefined;
    const onDeadline = (): void => {
      if (settled) return;
      settled = true;
      clients.drop(server.url);
      if (read === undefined && replicas.poolContended(shard, server, startedAt)) {
        // Queued for a pooled client behind other reads: the pool is full, the replica is fine.
        resolve({ outcome: 'busy', error: new Error(`no pooled client of the replica within readTimeoutMillis (${timeoutMillis} ms): its pool is full`) });
        return;
      }
      read?.end('deadline');
      const error = new Error(read === undefined ? `no connection to the replica within readTimeoutMillis (${timeoutMillis} ms), and it answered no read or check meanwhile` : `no answer to a read within readTimeoutMillis (${timeoutMillis} ms)`);
      replicas.markFailed(shard, server, error.message);
      resolve({ outcome: 'deadline', error });
    };
    let cancel = clock.setTimeout(onDeadline, timeoutMillis);
    const failed = (current: { end(outcome: ReadOutcome): void }, error: unknown): void => {
      if (settled) return;
      settled = true;
      cancel();
      const outcome = classifyReadFailure(error);
      current.end(outcome);
      if (outcome === 'unreachable') replicas.markFailed(shard, server, (error as Error)?.message ?? String(error));
      if (outcome === 'unreachable' || outcome === 'busy') clients.drop(server.url);
      resolve({ outcome, error });
    };
    const run = (): void => {
      const current = (read = replicas.startRead(shard, server));
      work().then(
        (value) => {
          if (settled) return;
          settled = true;
          cancel();
          current.end('ok');
          resolve({ value });
        },
        (error: unknown) => failed(current, error),
      );
    };
    if (checkout === undefined) return run();
    checkout().then(
      () => {
        if (settled) return;
        cancel();
        cancel = clock.setTimeout(onDeadline, timeoutMillis);
        run();
      },
      (error: unknown) => {
        if (!settled) failed((read = replicas.startRead(shard, server)), error);
      },
    );
  });
}
