/**
 * The connection Kysely sees. It plans each statement's route and dispatches on the plan's kind;
 * the work is done by its parts, one concept each:
 *
 * - {@link HeldClients}: at most one pg client per server, held until release (session state);
 * - {@link ShardTransaction}: BEGIN deferred to the first statement, bound to one shard, doomed on a cross-shard statement;
 * - {@link ReplicaReads}: the server a statement runs on, replica reads and streams under a deadline with fallback, read-your-writes positions;
 * - {@link MultiShardExecutor}: scatter reads and merges, split writes, partial-write errors, merged streams;
 * - {@link WriteEvents} (the runtime's): events of successful writes, after COMMIT inside a transaction;
 * - {@link retryAfterRefusal}: a statement a shard refused for a slot move runs once more on the new topology.
 */
import type { CompiledQuery, DatabaseConnection, QueryResult, TransactionSettings } from 'kysely';
import type { Shard } from '../../cluster/topology';
import { ErrorCodes } from '../../kernel/errors';
import { requireInteger } from '../../kernel/validate';
import { isPrimaryOnly, routeHintOf } from '../routing/route-hint';
import { planMayWrite, planRoute, type RoutePart, type RoutePlan, type SpreadPlan } from '../routing/route-planner';
import { RoutingError } from '../sharding-errors';
import { HeldClients, cursorRows, runOn } from './held-clients';
import { MultiShardExecutor, partsOnShards } from './multi-shard-executor';
import { ReplicaReads } from './replica-read';
import { ShardTransaction, type SavepointCommand } from './shard-transaction';
import { runTransactionControl, transactionControlOf, type TransactionControlTarget } from './transaction-control';
import type { ShardedRuntime } from './sharded-runtime';
import type { WriteEvents } from './write-events';
import { observeTransactionServer } from './statement-telemetry';
import { refreshHeldSessions, retryAfterRefusal } from './fence-retry';

type PlanKind = RoutePlan['kind'];
type PlanOf = { readonly [K in PlanKind]: Extract<RoutePlan, { readonly kind: K }> };

/** One handler per plan kind: a kind added to RoutePlan without a handler fails to compile. */
type PlanHandlers<A, T> = { readonly [K in PlanKind]: (connection: ShardedConnection, plan: PlanOf[K], compiled: CompiledQuery, arg: A) => T };

export class ShardedConnection implements DatabaseConnection, TransactionControlTarget {
  static readonly #execute: PlanHandlers<undefined, Promise<QueryResult<unknown>>> = Object.freeze({
    single: (c, plan, compiled) => c.#executeSingle(plan.shard, compiled, plan),
    split: (c, plan, compiled) => c.#executeSpread(compiled, plan, plan.parts),
    scatter: (c, plan, compiled) => c.#executeSpread(compiled, plan, partsOnShards(plan.shards, compiled.query)),
    broadcast: (c, plan, compiled) => c.#executeSpread(compiled, plan, partsOnShards(plan.shards, compiled.query)),
  });

  static readonly #stream: PlanHandlers<number, AsyncGenerator<QueryResult<unknown>>> = Object.freeze({
    single: (c, plan, compiled, chunkSize) => c.#streamSingle(plan.shard, compiled, plan, chunkSize),
    split: (c, plan, compiled, chunkSize) => c.#streamSpread(compiled, plan, plan.parts, chunkSize),
    scatter: (c, plan, compiled, chunkSize) => c.#streamSpread(compiled, plan, partsOnShards(plan.shards, compiled.query), chunkSize),
    broadcast: (c, plan, compiled, chunkSize) => c.#streamSpread(compiled, plan, partsOnShards(plan.shards, compiled.query), chunkSize),
  });

  static #dispatch<K extends PlanKind, A, T>(handlers: PlanHandlers<A, T>, connection: ShardedConnection, kind: K, plan: PlanOf[K], compiled: CompiledQuery, arg: A): T {
    return handlers[kind](connection, plan, compiled, arg);
  }

  readonly #runtime: ShardedRuntime;
  readonly #writes: WriteEvents;
  readonly #clients: HeldClients;
  readonly #reads: ReplicaReads;
  readonly #multi: MultiShardExecutor;
  #tx: ShardTransaction | null = null;
  /**
   * Set once raw SQL or DDL ran on this connection (`SET`, temp tables, locks, a manual BEGIN):
   * until it is released, its reads stay on the primaries, where that session state lives.
   */
  #session = false;
  /**
   * Statements and streams sent on this connection since it was acquired. Only a refused first
   * one, sent to one server, may give the held clients back instead of re-tagging them: after any
   * other, a client may carry session state a query-builder statement set (`set_config`, an
   * advisory lock, `currval`) or a stream may still read through it.
   */
  #statements = 0;

  constructor(runtime: ShardedRuntime) {
    this.#runtime = runtime;
    this.#writes = runtime.writes;
    this.#clients = new HeldClients(runtime);
    this.#reads = new ReplicaReads(runtime, this.#clients);
    this.#multi = new MultiShardExecutor(runtime, this.#clients, this.#reads);
  }

  executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    // BEGIN, COMMIT, ROLLBACK and savepoints from the driver (sent here so Kysely's `log` sees them).
    const control = compiled.query.kind === 'RawNode' ? transactionControlOf(compiled) : undefined;
    if (control !== undefined) return runTransactionControl(this, control);
    const first = this.#statements++ === 0;
    // Not async: the common single-shard read runs as one promise chain, without extra async frames.
    // A shard's fence refusal (a slot moved) reloads the topology and runs the statement once more.
    return this.#route<R>(compiled).catch((error: unknown) =>
      retryAfterRefusal(this.#runtime, error, {
        inTransaction: this.#tx !== null,
        // A first statement that reached several shards may have run on some of them (review 66): their clients may carry what it set.
        refreshSessions: () => refreshHeldSessions(this.#runtime, this.#clients, !first || this.#tx !== null || this.#session || this.#clients.arrived().length > 1),
        rerun: () => this.#route<R>(compiled),
      }),
    );
  }

  #route<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const runtime = this.#runtime;
    // Lean when no replica choice, span or metric reads the plan's table and keys (a lean plan works them out if an onRoute hook reads them).
    const lean = runtime.replicas === undefined && !runtime.telemetry.needsPlanDetails;
    let plan: RoutePlan;
    try {
      plan = this.#plan(compiled, lean);
    } catch (error) {
      runtime.telemetry.refused(error);
      return Promise.reject(error);
    }
    // Rows are typed by the caller's query builder, as in Kysely's own drivers.
    const observed = runtime.telemetry.begin(plan);
    if (observed !== undefined) return observed.execute(() => ShardedConnection.#dispatch(ShardedConnection.#execute, this, plan.kind, plan, compiled, undefined) as Promise<QueryResult<R>>);
    return ShardedConnection.#dispatch(ShardedConnection.#execute, this, plan.kind, plan, compiled, undefined) as Promise<QueryResult<R>>;
  }

  async *streamQuery<R>(compiled: CompiledQuery, chunkSize = 100): AsyncIterableIterator<QueryResult<R>> {
    requireInteger('chunkSize', chunkSize, 1);
    const plan = this.#plan(compiled);
    const chunks = ShardedConnection.#dispatch(ShardedConnection.#stream, this, plan.kind, plan, compiled, chunkSize) as AsyncGenerator<QueryResult<R>>;
    this.#statements++;
    yield* this.#runtime.telemetry.begin(plan)?.stream(chunks) ?? chunks;
  }

  /**
   * Starts a transaction. With one shard, BEGIN is sent now, as PostgresDialect does; with several,
   * once a statement binds it to a shard.
   */
  beginTransaction(_settings: TransactionSettings, begin: CompiledQuery): Promise<void> | void {
    const tx = (this.#tx = new ShardTransaction(begin, this.#clients));
    const shards = this.#runtime.topology.shards;
    if (shards.length === 1) return tx.begin(shards[0]!);
  }

  async commitTransaction(): Promise<void> {
    const tx = this.#takeTx();
    await tx.commit();
    const shard = tx.shard;
    if (shard === null) return; // nothing was sent
    if (tx.writes.length > 0) this.#writes.emit(tx.writes);
    if (tx.wrote) await this.#reads.noteWritePosition(shard);
  }

  /** Rolls back; a no-op when a failed commit already ended the transaction (Kysely's controlled transactions then call rollback to release the connection). */
  async rollbackTransaction(): Promise<void> {
    const tx = this.#tx;
    this.#tx = null;
    await tx?.rollback();
  }

  /** Runs a savepoint command (savepoint, rollback to, release) now, or after BEGIN if the transaction is not bound yet. */
  savepointCommand(command: CompiledQuery, kind: SavepointCommand, name: string): Promise<void> {
    const tx = this.#tx;
    if (tx === null) return Promise.reject(new RoutingError(ErrorCodes.UNROUTABLE_QUERY, `${kind} ${name} outside a transaction`, { savepoint: name }));
    return tx.savepoint(command, kind, name);
  }

  /**
   * Returns every held client to its pool. Synchronous (returns `undefined`) when every client had
   * arrived, which is the common case; otherwise a promise that settles once the late ones are back.
   */
  release(): Promise<void> | undefined {
    // A client left inside an open transaction must not go back to the pool in that state.
    const inTransaction = this.#tx !== null;
    this.#tx = null;
    this.#session = false;
    this.#statements = 0;
    return this.#clients.release(inTransaction);
  }

  #plan(compiled: CompiledQuery, lean = false): RoutePlan {
    let hint = routeHintOf(compiled.queryId);
    // Raw SQL inside a transaction that is already bound runs where the transaction runs.
    const bound = this.#tx?.shard;
    if (hint === undefined && bound != null && compiled.query.kind === 'RawNode') hint = { kind: 'shard', shardId: bound.id };
    const plan = planRoute(compiled.query, hint, this.#runtime.topology, this.#runtime.rules, lean);
    if (plan.statement === 'raw' || plan.statement === 'ddl') this.#session = true;
    // withPrimary() only changes where plain reads go, which matters only when replicas serve reads.
    if (plan.statement !== 'select' || plan.primaryOnly === true || this.#runtime.replicas === undefined) return plan;
    return isPrimaryOnly(compiled.queryId) ? { ...plan, primaryOnly: true } : plan;
  }

  #executeSingle<R>(shard: Shard, compiled: CompiledQuery, plan: RoutePlan): Promise<QueryResult<R>> {
    const tx = this.#tx;
    let result: Promise<QueryResult<R>>;
    if (tx === null) {
      result = this.#reads.run<R>(shard, plan, this.#session, compiled);
    } else {
      if (planMayWrite(plan)) tx.wrote = true;
      observeTransactionServer(plan, shard);
      result = tx.client(shard, plan).then((client) => runOn<R>(client, compiled.sql, compiled.parameters));
    }
    if (!planMayWrite(plan)) return result;
    return result.then((r) => {
      this.#writes.record(plan, shard, plan.kind === 'single' ? plan.keys : null, tx === null ? null : tx.writes);
      if (tx !== null || !this.#reads.tracksWrites) return r;
      return this.#reads.noteWritePosition(shard).then(() => r);
    });
  }

  /** A plan over several shards: one shard's query unchanged when it names one; refused inside a transaction. */
  async #executeSpread(compiled: CompiledQuery, plan: SpreadPlan, parts: readonly RoutePart[]): Promise<QueryResult<unknown>> {
    // A scatter or split over one shard is that shard's query unchanged: exact, nothing to merge.
    if (parts.length === 1) return this.#executeSingle(parts[0]!.shard, compiled, plan);
    const tx = this.#tx;
    if (tx !== null) throw tx.doom(`this ${plan.statement} spans shards ${parts.map((p) => `"${p.shard.id}"`).join(', ')}`);
    return this.#multi.execute(compiled, plan, parts, this.#session);
  }

  async *#streamSingle(shard: Shard, compiled: CompiledQuery, plan: RoutePlan, chunkSize: number): AsyncGenerator<QueryResult<unknown>> {
    const tx = this.#tx;
    if (tx !== null && planMayWrite(plan)) tx.wrote = true;
    if (tx !== null) observeTransactionServer(plan, shard);
    const Cursor = this.#runtime.cursor();
    // Outside a transaction, a plain read on a replica streams under the read deadline (and starts again elsewhere before its first row).
    const chunks =
      tx === null
        ? this.#reads.stream(shard, plan, this.#session, { compiled, observed: plan, Cursor, chunkSize })
        : cursorRows(Cursor, await tx.client(shard, plan), compiled, chunkSize);
    let failed = false;
    try {
      for await (const rows of chunks) yield { rows };
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      // A streamed write (insert … returning, a data-modifying CTE) wrote once its cursor ran, even if the reader stopped early.
      if (!failed && planMayWrite(plan)) {
        this.#writes.record(plan, shard, plan.kind === 'single' ? plan.keys : null, tx === null ? null : tx.writes);
        if (tx === null) await this.#reads.noteWritePosition(shard);
      }
    }
  }

  async *#streamSpread(compiled: CompiledQuery, plan: SpreadPlan, parts: readonly RoutePart[], chunkSize: number): AsyncGenerator<QueryResult<unknown>> {
    if (parts.length === 1) {
      yield* this.#streamSingle(parts[0]!.shard, compiled, plan, chunkSize);
      return;
    }
    const tx = this.#tx;
    if (tx !== null) throw tx.doom(`this stream spans ${parts.length} shards`);
    yield* this.#multi.stream(compiled, plan, parts, this.#session, chunkSize);
  }

  #takeTx(): ShardTransaction {
    const tx = this.#tx;
    if (tx === null) throw new RoutingError(ErrorCodes.UNROUTABLE_QUERY, 'No transaction is open on this connection.');
    this.#tx = null;
    return tx;
  }
}
