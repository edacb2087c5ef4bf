import { CompiledQuery, type DatabaseConnection, type QueryResult, type RootOperationNode, type SelectQueryNode, type TransactionSettings } from 'kysely';
import { ConfigError, ErrorCodes } from '../../kernel/errors';
import { CrossShardTransactionError, PartialWriteError, RoutingError, TransactionAbortedError } from '../sharding-errors';
import { isPrimaryOnly, routeHintOf } from '../routing/route-hint';
import { planMayWrite, planRoute, planTargets, type RoutePart, type RoutePlan } from '../routing/route-planner';
import { planScatter, type ScatterPlanOptions } from '../scatter/scatter-plan';
import type { PoolClientLike } from '../../cluster/server-pools';
import type { ShardedRuntime } from './sharded-runtime';
import type { Shard, ServerSpec } from '../../cluster/topology';
import type { WriteEvent } from './write-event';
import { isConnectionFailure, isPoolTimeout, isReadOnlyRefusal, isRecoveryConflict } from '../../cluster/connection-failure';
import { parseLsn } from '../../cluster/wal-position';

type Row = Record<string, unknown>;

// Beyond any real WAL position: a caller whose write position is unknown reads that shard's primary.
const UNKNOWN_POSITION = 1n << 64n;

// The route planner only scatters joins of sharded tables linked by equality on their shard keys,
// whose rows are co-located, so every join that reaches the scatter planner is safe.
const SCATTER_OPTIONS: ScatterPlanOptions = Object.freeze({ isJoinSafe: () => true });

interface TransactionState {
  readonly settings: TransactionSettings;
  /** The shard the transaction is bound to: set by its first statement that needs a shard. */
  shard: Shard | null;
  /** Savepoint commands issued before BEGIN was sent; replayed after it. */
  readonly deferred: CompiledQuery[];
  /** Whether BEGIN reached the bound shard. */
  began: boolean;
  /** Set when a statement crossed shards or BEGIN failed: the transaction can only roll back. */
  doomed: CrossShardTransactionError | TransactionAbortedError | null;
  /** Write events, emitted after COMMIT succeeds. */
  readonly writes: WriteEvent[];
  /** Whether a statement other than a plain read ran (read-your-writes then notes the commit's position). */
  wrote: boolean;
}

/**
 * The connection Kysely sees. It holds at most one real client per server for its lifetime (so
 * `db.connection()` keeps session state per shard), routes each statement, and in a transaction
 * defers BEGIN until the first statement that names a shard.
 */
export class ShardedConnection implements DatabaseConnection {
  readonly #runtime: ShardedRuntime;
  /**
   * The clients this connection holds, one per server, in acquisition order. A list searched by URL
   * rather than a Map: it holds one client for almost every statement, and a Map's clear() on
   * release allocates a new table each time (a scatter over n shards costs n² cheap comparisons).
   */
  readonly #held: HeldClient[] = [];
  #tx: TransactionState | null = null;
  /** Set when a held client may be in an unknown state: it is closed instead of returned to its pool. */
  #destroyOnRelease = false;
  /**
   * Set once raw SQL or DDL ran on this connection (`SET`, temp tables, locks, a manual BEGIN):
   * until it is released, its reads stay on the primaries, where that session state lives.
   */
  #session = false;

  constructor(runtime: ShardedRuntime) {
    this.#runtime = runtime;
  }

  executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    // Not async: the common single-shard read runs as one promise chain, without extra async frames.
    let plan: RoutePlan;
    try {
      plan = this.#plan(compiled);
    } catch (error) {
      return Promise.reject(error);
    }
    if (plan.kind === 'single') return this.#executeSingle<R>(plan.shard, compiled, plan);
    return this.#executeSpread<R>(compiled, plan);
  }

  async #executeSpread<R>(compiled: CompiledQuery, plan: Exclude<RoutePlan, { kind: 'single' }>): Promise<QueryResult<R>> {
    // A scatter or split over one shard is that shard's query unchanged: exact, nothing to merge.
    const shards = planTargets(plan);
    if (shards.length === 1) return this.#executeSingle<R>(shards[0]!, compiled, plan);
    const tx = this.#tx;
    if (tx !== null) throw this.#doom(tx, `this ${plan.statement} spans shards ${shards.map((s) => `"${s.id}"`).join(', ')}`);
    return (await this.#executeMulti(compiled, plan)) as QueryResult<R>;
  }

  async *streamQuery<R>(compiled: CompiledQuery, chunkSize = 100): AsyncIterableIterator<QueryResult<R>> {
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new ConfigError('chunkSize', `must be an integer > 0, got ${String(chunkSize)}`);
    const plan = this.#plan(compiled);
    const shards = planTargets(plan);
    if (plan.kind === 'single' || shards.length === 1) {
      const shard = shards[0]!;
      if (this.#tx !== null && planMayWrite(plan)) this.#tx.wrote = true;
      const client = await this.#clientForStatement(shard, plan);
      let failed = false;
      try {
        for await (const rows of this.#cursorRows(client, compiled.sql, compiled.parameters, chunkSize)) yield { rows: rows as R[] };
      } catch (error) {
        failed = true;
        throw error;
      } finally {
        // A streamed write (insert … returning, a data-modifying CTE) wrote once its cursor ran, even if the reader stopped early.
        if (!failed && planMayWrite(plan)) {
          this.#recordWrite(plan, shard, plan.kind === 'single' ? plan.keys : null);
          if (this.#tx === null) await this.#noteWritePosition(shard);
        }
      }
      return;
    }
    if (this.#tx !== null) throw this.#doom(this.#tx, `this stream spans ${shards.length} shards`);
    if (plan.statement !== 'select' || plan.kind === 'broadcast') {
      throw new RoutingError(ErrorCodes.UNSUPPORTED_SCATTER, `stream() over several shards works for SELECT only; run this ${plan.statement} with execute().`);
    }
    const scatter = planScatter(compiled.query as SelectQueryNode, SCATTER_OPTIONS);
    if (!scatter.streamable) {
      throw new RoutingError(ErrorCodes.UNSUPPORTED_SCATTER, 'This scatter query (aggregates, GROUP BY or DISTINCT) cannot be streamed: run it with execute(), or add the shard key.');
    }
    const parts = this.#parts(plan, compiled.query);
    const streams = await Promise.all(
      parts.map(async (part) => {
        const node = part.node === compiled.query ? scatter.shardNode : planScatter(part.node as SelectQueryNode, SCATTER_OPTIONS).shardNode;
        const query = this.#runtime.compile(node, compiled);
        const client = await this.#client(this.#runtime.serverFor(part.shard, plan, this.#session));
        return flatten(this.#cursorRows(client, query.sql, query.parameters, chunkSize));
      }),
    );
    let chunk: Row[] = [];
    for await (const row of scatter.mergeStreams(streams)) {
      chunk.push(row);
      if (chunk.length >= chunkSize) {
        yield { rows: chunk as R[] };
        chunk = [];
      }
    }
    if (chunk.length > 0) yield { rows: chunk as R[] };
  }

  /** Starts a transaction; BEGIN is sent once a statement binds it to a shard. */
  beginTransaction(settings: TransactionSettings): void {
    this.#tx = { settings, shard: null, began: false, deferred: [], doomed: null, writes: [], wrote: false };
  }

  async commitTransaction(): Promise<void> {
    const tx = this.#takeTx();
    if (tx.doomed !== null) {
      if (tx.began) await this.#send(tx.shard!, CompiledQuery.raw('rollback'));
      if (tx.doomed instanceof TransactionAbortedError) throw tx.doomed;
      throw new CrossShardTransactionError(`The transaction was rolled back, not committed: ${tx.doomed.message}`, { ...tx.doomed.context });
    }
    if (tx.shard === null) return; // nothing was sent
    await this.#send(tx.shard, CompiledQuery.raw('commit'));
    if (tx.writes.length > 0) this.#runtime.emitWrites(tx.writes);
    if (tx.wrote) await this.#noteWritePosition(tx.shard);
  }

  /** Rolls back; a no-op when a failed commit already ended the transaction (Kysely's controlled transactions then call rollback to release the connection). */
  async rollbackTransaction(): Promise<void> {
    const tx = this.#tx;
    this.#tx = null;
    if (tx?.began === true) await this.#send(tx.shard!, CompiledQuery.raw('rollback'));
  }

  /** Runs a savepoint command (savepoint, rollback to, release) now, or after BEGIN if the transaction is not bound yet. */
  async savepointCommand(command: CompiledQuery, kind: 'savepoint' | 'rollback to' | 'release', name: string): Promise<void> {
    const tx = this.#tx;
    if (tx === null) throw new RoutingError(ErrorCodes.UNROUTABLE_QUERY, `${kind} ${name} outside a transaction`);
    if (tx.shard !== null) {
      await this.#send(tx.shard, command);
      return;
    }
    // Not bound yet: nothing ran since the savepoint, so rolling back to it or releasing it only edits the queue.
    if (kind === 'savepoint') tx.deferred.push(command);
    else {
      const at = tx.deferred.findLastIndex((c) => c.sql.endsWith(`"${name}"`));
      if (at >= 0) tx.deferred.splice(kind === 'release' ? at : at + 1);
    }
  }

  /**
   * Returns every held client to its pool. Synchronous (returns `undefined`) when every client had
   * arrived, which is the common case; otherwise a promise that settles once the late ones are back.
   */
  release(): Promise<void> | undefined {
    // A client left inside an open transaction must not go back to the pool in that state.
    const destroy = this.#tx !== null || this.#destroyOnRelease ? true : undefined;
    this.#tx = null;
    this.#destroyOnRelease = false;
    this.#session = false;
    const entries = this.#held;
    if (entries.length === 0) return undefined;
    let late: Promise<void>[] | undefined;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.client !== undefined) entry.client.release(destroy);
      else (late ??= []).push(entry.pending.then((client) => client.release(destroy), () => undefined));
    }
    entries.length = 0;
    return late === undefined ? undefined : Promise.all(late).then(() => undefined);
  }

  #plan(compiled: CompiledQuery): RoutePlan {
    let hint = routeHintOf(compiled.queryId);
    // Raw SQL inside a transaction that is already bound runs where the transaction runs.
    const bound = this.#tx?.shard;
    if (hint === undefined && bound != null && compiled.query.kind === 'RawNode') hint = { kind: 'shard', shardId: bound.id };
    const plan = planRoute(compiled.query, hint, this.#runtime.topology, this.#runtime.rules);
    if (plan.statement === 'raw' || plan.statement === 'ddl') this.#session = true;
    // withPrimary() only changes where plain reads go, which matters only when replicas serve reads.
    if (plan.statement !== 'select' || plan.primaryOnly === true || !this.#runtime.readsFromReplicas) return plan;
    return isPrimaryOnly(compiled.queryId) ? { ...plan, primaryOnly: true } : plan;
  }

  #executeSingle<R>(shard: Shard, compiled: CompiledQuery, plan: RoutePlan): Promise<QueryResult<R>> {
    let result: Promise<QueryResult<R>>;
    if (this.#tx === null) {
      const server = this.#runtime.serverFor(shard, plan, this.#session);
      if (server !== shard.primary) return this.#readOnReplica<R>(server, shard, compiled);
      result = this.#runOnServer<R>(server, compiled);
    } else {
      if (planMayWrite(plan)) this.#tx.wrote = true;
      result = this.#transactionClient(this.#tx, shard, plan).then((client) => runOn<R>(client, compiled.sql, compiled.parameters));
    }
    if (!planMayWrite(plan)) return result;
    return result.then((r) => {
      this.#recordWrite(plan, shard, plan.kind === 'single' ? plan.keys : null);
      if (this.#tx !== null || this.#runtime.readYourWritesContext === undefined) return r;
      return this.#noteWritePosition(shard).then(() => r);
    });
  }

  /** Runs a statement outside a transaction on `server`, through the client this connection holds for it. */
  #runOnServer<R>(server: ServerSpec, compiled: CompiledQuery): Promise<QueryResult<R>> {
    const held = this.#heldFor(server.url);
    if (held !== undefined) {
      return held.client !== undefined ? runOn<R>(held.client, compiled.sql, compiled.parameters) : held.pending.then((client) => runOn<R>(client, compiled.sql, compiled.parameters));
    }
    // The common case, one statement per connection: the checkout's bookkeeping and the statement share one continuation.
    const entry = this.#hold(server);
    return entry.pending.then(
      (client) => {
        entry.client = client;
        return runOn<R>(client, compiled.sql, compiled.parameters);
      },
      (error: unknown) => {
        this.#forget(entry);
        throw error;
      },
    );
  }

  /** A plain read on a replica: its latency goes to the replica strategy; if the replica fails it (unreachable, replay conflict), the primary answers. */
  #readOnReplica<R>(replica: ServerSpec, shard: Shard, compiled: CompiledQuery): Promise<QueryResult<R>> {
    const started = performance.now();
    return this.#runOnServer<R>(replica, compiled).then(
      (r) => {
        this.#runtime.replicaOutcome(replica, performance.now() - started, true);
        return r;
      },
      (error: unknown) => {
        // Only an unreachable replica counts as its failure; a statement's own error is not its fault.
        this.#runtime.replicaOutcome(replica, performance.now() - started, !isConnectionFailure(error));
        return this.#readOnPrimary<R>(error, replica, shard, compiled);
      },
    );
  }

  async #readOnPrimary<R>(error: unknown, replica: ServerSpec, shard: Shard, compiled: CompiledQuery): Promise<QueryResult<R>> {
    if (isConnectionFailure(error)) {
      // A checkout that timed out only says the replica's pool is busy, not that the replica is down.
      if (!isPoolTimeout(error)) this.#runtime.replicaFailed(replica, (error as Error).message);
      this.#dropHeld(replica.url);
    } else if (!isRecoveryConflict(error) && !isReadOnlyRefusal(error)) {
      throw error;
    }
    return runOn<R>(await this.#client(shard.primary), compiled.sql, compiled.parameters);
  }

  /** Stops holding the client of `url`, closing it rather than returning it to its pool (it may be broken). */
  #dropHeld(url: string): void {
    const entry = this.#heldFor(url);
    if (entry === undefined) return;
    this.#forget(entry);
    if (entry.client !== undefined) entry.client.release(true);
    else entry.pending.then((client) => client.release(true), () => undefined);
  }

  /**
   * Inside a read-your-writes context, records how far the primary's WAL reached after a write on
   * `shard` (asked on the connection that wrote). If it cannot be asked, the caller reads that
   * shard from its primary from then on.
   */
  async #noteWritePosition(shard: Shard): Promise<void> {
    const context = this.#runtime.readYourWritesContext;
    if (context === undefined) return;
    try {
      const { rows } = await runOn<{ lsn: string }>(await this.#client(shard.primary), 'select pg_current_wal_insert_lsn()::text as lsn', []);
      context.noteWrite(shard.id, parseLsn(rows[0]!.lsn));
    } catch {
      context.noteWrite(shard.id, UNKNOWN_POSITION);
    }
  }

  /** The client a statement on `shard` runs on; inside a transaction, binds it or checks the binding. */
  #clientForStatement(shard: Shard, plan: RoutePlan): Promise<PoolClientLike> {
    if (this.#tx === null) return this.#client(this.#runtime.serverFor(shard, plan, this.#session));
    return this.#transactionClient(this.#tx, shard, plan);
  }

  async #transactionClient(tx: TransactionState, shard: Shard, plan: RoutePlan): Promise<PoolClientLike> {
    if (tx.doomed !== null) throw tx.doomed;
    if (tx.shard === null) {
      tx.shard = shard;
      try {
        const client = await this.#client(this.#runtime.serverFor(shard, plan, true));
        await runOn(client, beginSql(tx.settings), []);
        tx.began = true;
        for (const command of tx.deferred.splice(0)) await runOn(client, command.sql, command.parameters);
        return client;
      } catch (error) {
        // Without BEGIN, later statements would autocommit one by one: the transaction is over.
        this.#destroyOnRelease = true;
        tx.doomed = new TransactionAbortedError(`The transaction could not start on shard "${shard.id}"; roll it back and retry: ${(error as Error).message}`, error, { shardId: shard.id });
        throw error;
      }
    }
    if (tx.shard.id !== shard.id) {
      throw this.#doom(tx, `the transaction is bound to shard "${tx.shard.id}" and this ${plan.statement}${plan.table === null ? '' : ` on "${plan.table}"`} belongs to shard "${shard.id}"`);
    }
    return this.#client(this.#runtime.serverFor(tx.shard, plan, true));
  }

  async #executeMulti(compiled: CompiledQuery, plan: Exclude<RoutePlan, { kind: 'single' }>): Promise<QueryResult<unknown>> {
    const parts = this.#parts(plan, compiled.query);
    if (plan.statement === 'select') {
      const scatter = planScatter(compiled.query as SelectQueryNode, SCATTER_OPTIONS);
      // Every part settles before an error is thrown: Kysely releases the connection on the error,
      // and a client must not go back to its pool while its query still runs.
      const rowsPerShard = await allSettledOrThrow(
        parts.map(async (part) => {
          const node = part.node === compiled.query ? scatter.shardNode : planScatter(part.node as SelectQueryNode, SCATTER_OPTIONS).shardNode;
          const query = this.#runtime.compile(node, compiled);
          const client = await this.#client(this.#runtime.serverFor(part.shard, plan, this.#session));
          return (await runOn<Row>(client, query.sql, query.parameters)).rows;
        }),
      );
      return { rows: scatter.merge(rowsPerShard) };
    }
    const settled = await Promise.allSettled(
      parts.map(async (part) => {
        const query = part.node === compiled.query ? compiled : this.#runtime.compile(part.node, compiled);
        const client = await this.#client(this.#runtime.serverFor(part.shard, plan, this.#session));
        return runOn<unknown>(client, query.sql, query.parameters);
      }),
    );
    const committed: string[] = [];
    const failed: string[] = [];
    const positions: Promise<void>[] = [];
    let firstError: unknown;
    settled.forEach((outcome, i) => {
      const part = parts[i]!;
      if (outcome.status === 'fulfilled') {
        committed.push(part.shard.id);
        this.#recordWrite(plan, part.shard, part.keys);
        if (this.#runtime.readYourWritesContext !== undefined) positions.push(this.#noteWritePosition(part.shard));
      } else {
        failed.push(part.shard.id);
        firstError ??= outcome.reason;
      }
    });
    await Promise.all(positions);
    if (failed.length > 0) {
      // All failed: nothing was written, PostgreSQL's error is the whole story.
      if (committed.length === 0) throw firstError;
      throw new PartialWriteError(
        `This ${plan.statement} committed on ${committed.map((id) => `"${id}"`).join(', ')} and failed on ${failed.map((id) => `"${id}"`).join(', ')} (${(firstError as Error).message}). Writes split over shards outside a transaction are not atomic.`,
        firstError,
        { committed, failed },
      );
    }
    const results = settled.map((o) => (o as PromiseFulfilledResult<QueryResult<unknown>>).value);
    if (plan.kind === 'broadcast') return results[0]!;
    return mergeWriteResults(parts, results);
  }

  #parts(plan: Exclude<RoutePlan, { kind: 'single' }>, node: RootOperationNode): readonly RoutePart[] {
    if (plan.kind === 'split') return plan.parts;
    return plan.shards.map((shard) => ({ shard, node, keys: null }));
  }

  #recordWrite(plan: RoutePlan, shard: Shard, keys: readonly unknown[] | null): void {
    if (!this.#runtime.hasWriteListeners) return;
    const kind = plan.statement;
    const events: WriteEvent[] = [];
    if (kind === 'insert' || kind === 'update' || kind === 'delete' || kind === 'raw' || kind === 'merge') {
      events.push(Object.freeze({ kind: kind === 'merge' ? 'raw' : kind, table: plan.table, shardId: shard.id, keys: keys as WriteEvent['keys'] }));
    }
    // Data-modifying CTEs (with d as (delete …) select …) write too.
    for (const nested of plan.nestedWrites ?? []) events.push(Object.freeze({ kind: nested.kind, table: nested.table, shardId: shard.id, keys: null }));
    if (events.length === 0) return;
    if (this.#tx !== null) this.#tx.writes.push(...events);
    else this.#runtime.emitWrites(events);
  }

  #doom(tx: TransactionState, reason: string): CrossShardTransactionError | TransactionAbortedError {
    tx.doomed ??= new CrossShardTransactionError(
      `Cross-shard transaction refused: ${reason}. A transaction runs on one shard; nothing of it will commit. Split the work into one transaction per shard.`,
      { boundShard: tx.shard?.id ?? null },
    );
    return tx.doomed;
  }

  #takeTx(): TransactionState {
    const tx = this.#tx;
    if (tx === null) throw new RoutingError(ErrorCodes.UNROUTABLE_QUERY, 'No transaction is open on this connection.');
    this.#tx = null;
    return tx;
  }

  async #send(shard: Shard, command: CompiledQuery): Promise<void> {
    const client = await this.#client(this.#runtime.serverFor(shard, null, true));
    await runOn(client, command.sql, command.parameters);
  }

  #client(server: ServerSpec): Promise<PoolClientLike> {
    const held = this.#heldFor(server.url);
    if (held !== undefined) return held.pending;
    const entry = this.#hold(server);
    entry.pending.then(
      (client) => {
        entry.client = client;
      },
      () => this.#forget(entry),
    );
    return entry.pending;
  }

  /**
   * Starts a checkout of `server` and registers it before it resolves, so a concurrent statement
   * for the same server shares it. The caller's first continuation on `pending` must set
   * `client`, or forget the entry when the checkout fails.
   */
  #hold(server: ServerSpec): HeldClient {
    const entry: HeldClient = { url: server.url, pending: this.#runtime.acquire(server), client: undefined };
    this.#held.push(entry);
    return entry;
  }

  #forget(entry: HeldClient): void {
    const at = this.#held.indexOf(entry);
    if (at >= 0) this.#held.splice(at, 1);
  }

  #heldFor(url: string): HeldClient | undefined {
    const held = this.#held;
    for (let i = 0; i < held.length; i++) if (held[i]!.url === url) return held[i];
    return undefined;
  }

  async *#cursorRows(client: PoolClientLike, sql: string, parameters: readonly unknown[], chunkSize: number): AsyncGenerator<unknown[]> {
    const Cursor = this.#runtime.cursor();
    const cursor = client.query(new Cursor(sql, [...parameters]));
    try {
      for (;;) {
        const rows = await cursor.read(chunkSize);
        if (rows.length === 0) return;
        yield rows;
      }
    } finally {
      await cursor.close();
    }
  }
}

/** A client this connection holds: the pending checkout, and the client once it arrived. */
interface HeldClient {
  readonly url: string;
  readonly pending: Promise<PoolClientLike>;
  client: PoolClientLike | undefined;
}

function runOn<R>(client: PoolClientLike, sql: string, parameters: readonly unknown[]): Promise<QueryResult<R>> {
  return client.query(sql, [...parameters]).then(toQueryResult<R>);
}

function toQueryResult<R>({ command, rowCount, rows }: { command: string; rowCount: number | null; rows: unknown[] }): QueryResult<R> {
  const writes = command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE';
  return writes ? { numAffectedRows: BigInt(rowCount ?? 0), rows: (rows ?? []) as R[] } : { rows: (rows ?? []) as R[] };
}

function beginSql(settings: TransactionSettings): string {
  let sql = 'start transaction';
  if (settings.isolationLevel !== undefined) sql += ` isolation level ${settings.isolationLevel}`;
  if (settings.accessMode !== undefined) sql += ` ${settings.accessMode}`;
  return sql;
}


/** Sums affected rows and concatenates RETURNING rows; a split insert's rows come back in VALUES order when each part returned one row per inserted row. */
function mergeWriteResults(parts: readonly RoutePart[], results: readonly QueryResult<unknown>[]): QueryResult<unknown> {
  let affected: bigint | undefined;
  for (const r of results) if (r.numAffectedRows !== undefined) affected = (affected ?? 0n) + r.numAffectedRows;
  const inOrder = parts.every((p, i) => p.rowIndexes !== undefined && results[i]!.rows.length === p.rowIndexes.length);
  let rows: unknown[];
  if (inOrder) {
    rows = [];
    parts.forEach((p, i) => p.rowIndexes!.forEach((at, j) => (rows[at] = results[i]!.rows[j])));
  } else {
    rows = results.flatMap((r) => r.rows);
  }
  return affected === undefined ? { rows } : { numAffectedRows: affected, rows };
}

/** The values of `promises` once all settled; the first rejection's reason if any failed. */
async function allSettledOrThrow<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((o) => (o as PromiseFulfilledResult<T>).value);
}

async function* flatten(chunks: AsyncIterable<unknown[]>): AsyncGenerator<Row> {
  for await (const chunk of chunks) for (const row of chunk) yield row as Row;
}

