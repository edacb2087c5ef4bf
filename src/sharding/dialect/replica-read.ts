/**
 * The replica read path of a connection: where a statement runs (a replica for a plain read when
 * one is eligible, else the primary); plain reads, single-shard or one shard's part of a scatter,
 * on the {@link ReplicaReadPath} (deadline, retry on another replica or the primary, on-demand
 * replay wait, monotonic reads); streams on the {@link ReplicaStreamPath} (the same, per chunk);
 * and read-your-writes (the primary's WAL position noted after each write, so later reads wait for
 * a replica that replayed it).
 *
 * The seam to `src/replication` is {@link ReplicaChooser}.
 */
import type { QueryResult, CompiledQuery } from 'kysely';
import type { ServerSpec, Shard } from '../../cluster/topology';
import { parseLsn, PRIMARY_WAL_END_SQL } from '../../cluster/wal-position';
import { planMayWrite, type RoutePlan } from '../routing/route-planner';
import { cursorRows, runOn, type HeldClients } from './held-clients';
import { observePrimaryRetry, observeServer, statementsObserved } from './statement-telemetry';

import { UNKNOWN_POSITION } from '../../replication/read-your-writes';
import { ReplicaReadPath, type ReplicaReadRuntime } from './replica-read-path';
import { ReplicaStreamPath, type StreamStatement } from './replica-stream';

export type { ReplicaChooser, ReplicaReadRuntime } from './replica-read-path';

/** Replica reads and read-your-writes positions of one connection, over its held clients. */
export class ReplicaReads {
  readonly #runtime: ReplicaReadRuntime;
  readonly #clients: HeldClients;
  readonly #path: ReplicaReadPath;
  readonly #streams: ReplicaStreamPath;

  constructor(runtime: ReplicaReadRuntime, clients: HeldClients) {
    this.#runtime = runtime;
    this.#clients = clients;
    const path = (this.#path = new ReplicaReadPath(runtime, clients, (shard, plan) => observePrimaryRetry(plan, shard)));
    this.#streams = new ReplicaStreamPath(runtime, clients, {
      onRetry: (shard, plan) => observePrimaryRetry(plan, shard),
      noteSeen: (replicas, shard, server) => path.noteSeen(replicas, shard, server),
    });
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

  /**
   * Where a read on the read path is observed: at its first attempt, which a read-your-writes
   * wait may move from the primary chosen now to a replica that replayed the caller's position.
   * `undefined` while no statement is observed (nothing to tell).
   */
  #observeFirst(shard: Shard, plan: RoutePlan): ((server: ServerSpec) => void) | undefined {
    if (!statementsObserved()) return undefined;
    return (server) => observeServer(plan, shard, server, this.#runtime, false);
  }

  #serverFor(shard: Shard, plan: RoutePlan, inSession: boolean): ServerSpec {
    const replicas = this.#runtime.replicas;
    if (replicas === undefined || inSession || planMayWrite(plan) || plan.primaryOnly === true) return shard.primary;
    return replicas.serverForRead(shard, this.#runtime.readYourWritesContext?.requiredPosition(shard.id)) ?? shard.primary;
  }

  /**
   * A statement on `shard` outside a transaction, wherever {@link serverFor} sends it: a plain read
   * takes the {@link ReplicaReadPath} (deadline, retry on another replica or the primary, a
   * read-your-writes wait), anything else runs where it was sent.
   * `compiled` may be one shard's part of the statement planned as `plan`.
   */
  run<R>(shard: Shard, plan: RoutePlan, inSession: boolean, compiled: CompiledQuery): Promise<QueryResult<R>> {
    const server = this.#serverFor(shard, plan, inSession);
    const replicas = this.#runtime.replicas;
    if (replicas !== undefined && (server !== shard.primary || this.readsOnPath(plan, inSession))) {
      return this.#path.read<R>(replicas, server, shard, compiled, plan, this.#observeFirst(shard, plan));
    }
    observeServer(plan, shard, server, this.#runtime, inSession);
    return this.#clients.run<R>(server, compiled);
  }

  /**
   * The rows of a streamed statement on `shard` outside a transaction, in chunks: a plain read that
   * {@link serverFor} sends to a replica streams there under the read deadline per chunk, and
   * starts again elsewhere if its replica fails before the first row (see {@link ReplicaStreamPath});
   * anything else streams where it was sent.
   */
  stream(shard: Shard, plan: RoutePlan, inSession: boolean, statement: StreamStatement): AsyncGenerator<unknown[]> {
    const server = this.#serverFor(shard, plan, inSession);
    const replicas = this.#runtime.replicas;
    if (replicas !== undefined && (server !== shard.primary || this.readsOnPath(plan, inSession))) {
      return this.#streams.stream(replicas, server, shard, statement, this.#observeFirst(shard, plan));
    }
    observeServer(plan, shard, server, this.#runtime, inSession);
    return this.#primaryStream(server, statement);
  }

  async *#primaryStream(server: ServerSpec, { compiled, Cursor, chunkSize }: StreamStatement): AsyncGenerator<unknown[]> {
    yield* cursorRows(Cursor, await this.#clients.client(server), compiled, chunkSize);
  }

  /**
   * Whether a plain read that {@link serverFor} sent to the primary should still take the
   * read path: inside a read-your-writes context, where it may wait for a replica to replay
   * the caller's position and notes how far the primary was (monotonic reads).
   */
  readsOnPath(plan: RoutePlan, inSession: boolean): boolean {
    return this.#runtime.replicas !== undefined && this.#runtime.readYourWritesContext !== undefined && !inSession && !planMayWrite(plan) && plan.primaryOnly !== true;
  }

  /**
   * Inside a read-your-writes context, records how far the primary's WAL reached after a write on
   * `shard` (asked on the connection that wrote). If it cannot be asked, the caller reads that
   * shard from its primary from then on.
   */
  async noteWritePosition(shard: Shard): Promise<void> {
    const context = this.#runtime.readYourWritesContext;
    if (context === undefined) return;
    const look = context.beginLook();
    try {
      const { rows } = await runOn<{ lsn: string }>(await this.#clients.client(shard.primary), `select ${PRIMARY_WAL_END_SQL} as lsn`, []);
      context.noteWrite(shard.id, parseLsn(rows[0]!.lsn), look);
    } catch {
      context.noteWrite(shard.id, UNKNOWN_POSITION);
    }
  }

  /** Whether writes must note their position (a read-your-writes context is active). */
  get tracksWrites(): boolean {
    return this.#runtime.readYourWritesContext !== undefined;
  }
}
