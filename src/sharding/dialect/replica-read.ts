/**
 * The replica read path of a connection: where a statement runs (a replica for a plain read when
 * one is eligible, else the primary), a replica read whose latency and outcome go to the replica
 * strategy and which the primary answers when the replica cannot, and read-your-writes (the
 * primary's WAL position noted after each write, so later reads wait for a replica that replayed it).
 *
 * The seam to `src/replication` is {@link ReplicaChooser}: three calls per read, nothing else.
 */
import type { QueryResult, CompiledQuery } from 'kysely';
import { isConnectionFailure, isPoolTimeout, isReadOnlyRefusal, isRecoveryConflict } from '../../cluster/connection-failure';
import type { ServerSpec, Shard } from '../../cluster/topology';
import { parseLsn } from '../../cluster/wal-position';
import type { Clock } from '../../kernel/clock';
import type { ReadYourWritesContext } from '../../replication/read-your-writes';
import { planMayWrite, type RoutePlan } from '../routing/route-planner';
import { runOn, type HeldClients } from './held-clients';
import { observePrimaryRetry, observeServer } from './statement-telemetry';

// Beyond any real WAL position: a caller whose write position is unknown reads that shard's primary.
const UNKNOWN_POSITION = 1n << 64n;

/** What the read path asks of the replica router (`src/replication`). */
export interface ReplicaChooser {
  /** The replica a plain read on `shard` should use (one that replayed `requiredPosition`, when given), or `undefined` for the primary. */
  serverForRead(shard: Shard, requiredPosition: bigint | undefined): ServerSpec | undefined;
  /** How a read on `server` went: its latency, and whether the replica was at fault if it failed (`ok: false`). */
  complete(server: ServerSpec, latencyMillis: number, ok: boolean): void;
  /** Takes a replica out of read service until its next successful check. */
  markFailed(server: ServerSpec, problem: string): void;
}

/** What the read path needs of the dialect's runtime. */
export interface ReplicaReadRuntime {
  /** Present when plain reads may use replicas. */
  readonly replicas: ReplicaChooser | undefined;
  /** Measures replica read latencies. */
  readonly clock: Clock;
  /** The read-your-writes context of the running async call, if any. */
  readonly readYourWritesContext: ReadYourWritesContext | undefined;
}

/** Replica reads and read-your-writes positions of one connection, over its held clients. */
export class ReplicaReads {
  readonly #runtime: ReplicaReadRuntime;
  readonly #clients: HeldClients;

  constructor(runtime: ReplicaReadRuntime, clients: HeldClients) {
    this.#runtime = runtime;
    this.#clients = clients;
  }

  /**
   * The one place that chooses the server a statement on `shard` runs on: a replica for a plain
   * read when replica reads are on and one is eligible (for the current read-your-writes context,
   * if any); the primary for everything else, and for every statement that needs its session
   * (`inSession`: on a connection that ran raw SQL or DDL; transactions always use the primary).
   */
  serverFor(shard: Shard, plan: RoutePlan, inSession: boolean): ServerSpec {
    const server = this.#serverFor(shard, plan, inSession);
    observeServer(plan, shard, server, this.#runtime, inSession);
    return server;
  }

  #serverFor(shard: Shard, plan: RoutePlan, inSession: boolean): ServerSpec {
    const replicas = this.#runtime.replicas;
    if (replicas === undefined || inSession || planMayWrite(plan) || plan.primaryOnly === true) return shard.primary;
    return replicas.serverForRead(shard, this.#runtime.readYourWritesContext?.requiredPosition(shard.id)) ?? shard.primary;
  }

  /** A plain read on `replica` of `shard`: its latency goes to the replica strategy; if the replica fails it (unreachable, replay conflict), the primary answers. */
  read<R>(replica: ServerSpec, shard: Shard, compiled: CompiledQuery): Promise<QueryResult<R>> {
    const clock = this.#runtime.clock;
    const started = clock.monotonicNow();
    return this.#clients.run<R>(replica, compiled).then(
      (r) => {
        this.#runtime.replicas?.complete(replica, clock.monotonicNow() - started, true);
        return r;
      },
      (error: unknown) => {
        // Only an unreachable replica counts as its failure; a statement's own error is not its fault.
        this.#runtime.replicas?.complete(replica, clock.monotonicNow() - started, !isConnectionFailure(error));
        return this.#readOnPrimary<R>(error, replica, shard, compiled);
      },
    );
  }

  /**
   * Inside a read-your-writes context, records how far the primary's WAL reached after a write on
   * `shard` (asked on the connection that wrote). If it cannot be asked, the caller reads that
   * shard from its primary from then on.
   */
  async noteWritePosition(shard: Shard): Promise<void> {
    const context = this.#runtime.readYourWritesContext;
    if (context === undefined) return;
    try {
      const { rows } = await runOn<{ lsn: string }>(await this.#clients.client(shard.primary), 'select pg_current_wal_insert_lsn()::text as lsn', []);
      context.noteWrite(shard.id, parseLsn(rows[0]!.lsn));
    } catch {
      context.noteWrite(shard.id, UNKNOWN_POSITION);
    }
  }

  /** Whether writes must note their position (a read-your-writes context is active). */
  get tracksWrites(): boolean {
    return this.#runtime.readYourWritesContext !== undefined;
  }

  /** The primary's answer after `replica` failed a read with `error`; statement errors that are not the replica's fault are thrown as they are. */
  async #readOnPrimary<R>(error: unknown, replica: ServerSpec, shard: Shard, compiled: CompiledQuery): Promise<QueryResult<R>> {
    if (isConnectionFailure(error)) {
      // A checkout that timed out only says the replica's pool is busy, not that the replica is down.
      if (!isPoolTimeout(error)) this.#runtime.replicas?.markFailed(replica, (error as Error).message);
      this.#clients.drop(replica.url);
    } else if (!isRecoveryConflict(error) && !isReadOnlyRefusal(error)) {
      throw error;
    }
    observePrimaryRetry(compiled, shard);
    return this.#clients.run<R>(shard.primary, compiled);
  }
}
