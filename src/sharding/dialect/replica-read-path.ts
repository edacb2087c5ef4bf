/**
 * The path of one plain read of one shard (a single-shard read, or one shard's part of a scatter)
 * that may use a replica: every attempt on a replica runs under a client-side deadline
 * (`readTimeoutMillis`, checkout included); a replica that cannot be reached or passes the
 * deadline leaves rotation at once and the read runs again on another eligible replica, else on
 * the primary ({@link ReplicaReadRoute}). Inside a read-your-writes context, a read whose position
 * no replica is known to have replayed first waits (briefly, on demand) for one that does, and
 * every read notes how far the data it saw reached, so the context's later reads never go back in
 * time across servers (monotonic reads). With the primary down, such a read fails with a coded,
 * retryable error rather than reading stale.
 */
import { CompiledQuery, type QueryResult } from 'kysely';
import type { ServerSpec, Shard } from '../../cluster/topology';
import { isConnectionFailure } from '../../cluster/connection-failure';
import { formatLsn, parseLsn, PRIMARY_WAL_END_SQL } from '../../cluster/wal-position';
import type { Clock } from '../../kernel/clock';
import { withDeadline } from '../../kernel/deadline';
import { UNKNOWN_POSITION, type ReadYourWritesContext } from '../../replication/read-your-writes';
import { PrimaryUnavailableError, ReadYourWritesUnavailableError } from '../../replication/replication-errors';
import type { RoutePlan } from '../routing/route-planner';
import type { HeldClients } from './held-clients';
import { attemptOnReplica, type ReplicaAttemptTarget } from './replica-attempt';
import { ReplicaReadRoute, type ReplicaRouteSource } from './replica-read-route';

/** What the read path asks of the replica router (`src/replication`). */
export interface ReplicaChooser extends ReplicaAttemptTarget, ReplicaRouteSource {
  readonly options: ReplicaRouteSource['options'];
  /** A fresh look at a replica's replay position. */
  noteReplayed(shard: Shard, server: ServerSpec, lsn: bigint): void;
  /** An upper bound of the primary's position now, when known. */
  primaryPositionBound(shard: Shard): bigint | undefined;
  /** A statement on `server` failed to reach it: a primary is marked down (a coded error is returned for it); anything else is returned unchanged. */
  acquireFailed(server: ServerSpec, error: unknown): unknown;
  /** A client of `shard`'s primary broke mid-statement: check the primary now (without marking it down). */
  primaryClientLost(shard: Shard): void;
  /** Whether `shard`'s primary answers a check that ends after this call. */
  primaryAnswers(shard: Shard): Promise<boolean>;
}

/** What the read path needs of the dialect's runtime. */
export interface ReplicaReadRuntime {
  /** Present when plain reads may use replicas. */
  readonly replicas: ReplicaChooser | undefined;
  /** Times replica reads and their deadlines. */
  readonly clock: Clock;
  /** The read-your-writes context of the running async call, if any. */
  readonly readYourWritesContext: ReadYourWritesContext | undefined;
}

const REPLAY_SQL = CompiledQuery.raw('select pg_last_wal_replay_lsn()::text as lsn');
const PRIMARY_POSITION_SQL = CompiledQuery.raw(`select ${PRIMARY_WAL_END_SQL} as lsn`);

/** Runs plain reads for one connection; see the file's opening comment. */
export class ReplicaReadPath {
  readonly #runtime: ReplicaReadRuntime;
  readonly #clients: HeldClients;
  readonly #onRetry: (shard: Shard, observed: RoutePlan) => void;

  /** @param onRetry told when a read runs again on the primary because a replica could not answer it. */
  constructor(runtime: ReplicaReadRuntime, clients: HeldClients, onRetry: (shard: Shard, observed: RoutePlan) => void) {
    this.#runtime = runtime;
    this.#clients = clients;
    this.#onRetry = onRetry;
  }

  /**
   * A plain read on `shard`, starting on `first` (a replica, or the primary when none was eligible).
   * `observed` is the plan of the statement the telemetry observes (`compiled` may be one shard's part of it);
   * `onFirst` is told the server of the first attempt (a read-your-writes wait may move it from the primary to a replica).
   */
  async read<R>(replicas: ReplicaChooser, first: ServerSpec, shard: Shard, compiled: CompiledQuery, observed: RoutePlan, onFirst?: (server: ServerSpec) => void): Promise<QueryResult<R>> {
    const context = this.#runtime.readYourWritesContext;
    const route = new ReplicaReadRoute(replicas, shard, context?.requiredPosition(shard.id), first, this.#runtime.clock, onFirst);
    let primaryLost = false;
    for (;;) {
      const server = await route.next();
      if (server === undefined) {
        if (route.retried) this.#onRetry(shard, observed);
        let result: QueryResult<R>;
        try {
          result = await this.#onPrimary<R>(replicas, shard, compiled);
        } catch (error) {
          // The primary did not answer the read: its client broke in the middle (a terminated
          // backend, a reset socket, the server died) or it passed the read deadline and then missed
          // a check (hung). A read is safe to run again: on a replica that may serve it, else (a
          // broken client only, once) on the primary with a fresh client, else a coded retryable
          // error, never the driver's. The client is closed. One broken client does not mark the
          // primary down: it is checked now, and a refused connection or missed checks do that.
          const hung = error instanceof PrimaryNoAnswerError;
          if (!hung && !isConnectionFailure(error)) throw error;
          this.#clients.drop(shard.primary.url);
          if (!hung) replicas.primaryClientLost(shard);
          route.primaryFailed();
          if (route.replicaNext) continue;
          if (hung || primaryLost) throw this.#unavailable(shard, hung ? (error as Error).message : `its client broke twice: ${(error as Error)?.message ?? String(error)}`, error);
          primaryLost = true;
          continue;
        }
        if (context !== undefined) await this.noteSeen(replicas, shard, undefined);
        return result;
      }
      const attempt = await attemptOnReplica(this.#runtime.clock, this.#clients, replicas, shard, server, () => this.#clients.run<R>(server, compiled), () => this.#clients.client(server));
      if ('value' in attempt) {
        if (context !== undefined) await this.noteSeen(replicas, shard, server);
        return attempt.value;
      }
      if (attempt.outcome === 'statement') throw attempt.error;
      route.failed(attempt.outcome);
    }
  }

  /**
   * The read on the primary. Past `readTimeoutMillis` the primary is checked: a primary that answers
   * the check (a slow statement) keeps the read, which is checked again each further deadline; one
   * that does not (hung, e.g. stopped) loses it: rejects with {@link PrimaryNoAnswerError}.
   */
  async #onPrimary<R>(replicas: ReplicaChooser, shard: Shard, compiled: CompiledQuery): Promise<QueryResult<R>> {
    const clock = this.#runtime.clock;
    const timeoutMillis = replicas.options.readTimeoutMillis;
    const work = this.#clients.run<R>(shard.primary, compiled);
    let settled = false;
    const done = work.then(
      () => (settled = true),
      () => (settled = true),
    );
    while (!(await settledWithin(done, clock, timeoutMillis))) {
      const answers = await Promise.race([replicas.primaryAnswers(shard), done]);
      if (!answers && !settled) throw new PrimaryNoAnswerError(timeoutMillis);
    }
    return work;
  }

  /** The coded, retryable error of a read the primary could not serve and no replica may. */
  #unavailable(shard: Shard, why: string, cause: unknown): Error {
    const required = this.#runtime.readYourWritesContext?.requiredPosition(shard.id);
    if (required !== undefined) {
      const position = required === UNKNOWN_POSITION ? 'unknown' : formatLsn(required);
      return new ReadYourWritesUnavailableError(`The primary ${shard.primary.redactedUrl} of shard "${shard.id}" did not answer a read-your-writes read (${why}) and no replica confirmed the caller's position ${position}: the read was not served stale. Retry.`, { shardId: shard.id, requiredPosition: position }, cause);
    }
    return new PrimaryUnavailableError(`The primary ${shard.primary.redactedUrl} of shard "${shard.id}" did not answer a read (${why}) and no replica may serve it. Retry.`, { shardId: shard.id, server: shard.primary.redactedUrl, reason: 'no answer' }, cause);
  }

  /**
   * After a read of `shard` inside a read-your-writes context (no-op outside one): notes how far
   * the data it saw reached, so the context's later reads never go back before it. On a replica
   * (`server`), its replay position then; on the primary (`undefined`), the primary's position.
   */
  async noteSeen(replicas: ReplicaChooser, shard: Shard, server: ServerSpec | undefined): Promise<void> {
    const context = this.#runtime.readYourWritesContext;
    if (context === undefined) return;
    let lsn: bigint;
    let look: number | undefined;
    if (server === undefined) {
      look = context.beginLook();
      try {
        const { rows } = await withDeadline(this.#clients.run<{ lsn: string }>(shard.primary, PRIMARY_POSITION_SQL), replicas.options.readTimeoutMillis, 'the primary', { clock: this.#runtime.clock });
        lsn = parseLsn(rows[0]!.lsn);
      } catch {
        this.#clients.drop(shard.primary.url); // it may never answer: closed, never reused
        lsn = UNKNOWN_POSITION;
      }
    } else {
      try {
        const { rows } = await withDeadline(this.#clients.run<{ lsn: string }>(server, REPLAY_SQL), replicas.options.readTimeoutMillis, 'the replica', { clock: this.#runtime.clock });
        lsn = parseLsn(rows[0]!.lsn);
        replicas.noteReplayed(shard, server, lsn);
      } catch (error) {
        // Not answered: what the primary can have reached by now bounds what the read saw, and the
        // replica leaves rotation now rather than at its next check or a read's deadline.
        replicas.markFailed(shard, server, `no answer to its replay position after a read: ${(error as Error)?.message ?? String(error)}`);
        this.#clients.drop(server.url);
        lsn = replicas.primaryPositionBound(shard) ?? UNKNOWN_POSITION;
      }
    }
    context.noteRead(shard.id, lsn, look);
  }
}


/** A read on the primary passed the read deadline and the primary then did not answer a check. */
class PrimaryNoAnswerError extends Error {
  constructor(timeoutMillis: number) {
    super(`no answer within readTimeoutMillis (${timeoutMillis} ms), nor to a check after it`);
    this.name = 'PrimaryNoAnswerError';
  }
}

/** Whether `promise` settles within `millis` (on the injected clock). */
function settledWithin(promise: Promise<unknown>, clock: Clock, millis: number): Promise<boolean> {
  return new Promise((resolve) => {
    const cancel = clock.setTimeout(() => resolve(false), millis);
    void promise.then(() => {
      cancel();
      resolve(true);
    });
  });
}
