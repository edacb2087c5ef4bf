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
import { parseLsn, PRIMARY_WAL_END_SQL } from '../../cluster/wal-position';
import type { Clock } from '../../kernel/clock';
import { withDeadline } from '../../kernel/deadline';
import { UNKNOWN_POSITION, type ReadYourWritesContext } from '../../replication/read-your-writes';
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
          result = await this.#clients.run<R>(shard.primary, compiled);
        } catch (error) {
          // The primary went down under the read (in flight when it died). A read is safe to run
          // again: once, on a replica that may serve it, else a coded retryable error, never the
          // driver's. The broken client is closed; the primary is marked down.
          if (primaryLost || !isConnectionFailure(error)) throw error;
          primaryLost = true;
          this.#clients.drop(shard.primary.url);
          replicas.acquireFailed(shard.primary, error);
          route.primaryFailed();
          continue;
        }
        if (context !== undefined) await this.noteSeen(replicas, shard, undefined);
        return result;
      }
      const attempt = await attemptOnReplica(this.#runtime.clock, this.#clients, replicas, shard, server, () => this.#clients.run<R>(server, compiled));
      if ('value' in attempt) {
        if (context !== undefined) await this.noteSeen(replicas, shard, server);
        return attempt.value;
      }
      if (attempt.outcome === 'statement') throw attempt.error;
      route.failed(attempt.outcome);
    }
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
    if (server === undefined) {
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
    context.noteRead(shard.id, lsn);
  }
}

