/**
 * The state machine of a transaction on a sharded connection. A transaction runs on one shard's
 * primary: BEGIN is deferred until the first statement that names a shard binds it there
 * (savepoints issued before are queued and replayed after BEGIN); a statement for another shard
 * dooms it, so it can only roll back, and nothing of it commits.
 *
 *   open ──first statement──▶ bound (BEGIN sent) ──commit/rollback──▶ ended
 *     └──────── cross-shard statement or failed BEGIN ──▶ doomed ──commit──▶ rolled back, error thrown
 */
import { CompiledQuery } from 'kysely';
import type { PoolClientLike } from '../../cluster/server-pools';
import type { Shard } from '../../cluster/topology';
import type { RoutePlan } from '../routing/route-planner';
import { CrossShardTransactionError, TransactionAbortedError } from '../sharding-errors';
import { runOn, type HeldClients } from './held-clients';
import type { WriteEvent } from './write-event';
import type { SavepointCommand } from './transaction-control';

export type { SavepointCommand } from './transaction-control';

/** One transaction of a connection, from `beginTransaction()` to commit or rollback. */
export class ShardTransaction {
  /** The BEGIN to send (Kysely's text, with the isolation level and access mode). */
  readonly #begin: CompiledQuery;
  readonly #clients: HeldClients;
  #shard: Shard | null = null;
  /** Savepoints set before BEGIN was sent, by name; replayed after it. */
  readonly #deferred: { readonly name: string; readonly command: CompiledQuery }[] = [];
  /** Whether BEGIN reached the bound shard. */
  #began = false;
  /** Set when a statement crossed shards or BEGIN failed: the transaction can only roll back. */
  #doomed: CrossShardTransactionError | TransactionAbortedError | null = null;
  /** Write events of its statements, emitted after COMMIT succeeds. */
  readonly writes: WriteEvent[] = [];
  /** Whether a statement other than a plain read ran (read-your-writes then notes the commit's position). */
  wrote = false;

  constructor(begin: CompiledQuery, clients: HeldClients) {
    this.#begin = begin;
    this.#clients = clients;
  }

  /** The shard the transaction is bound to: set by its first statement that needs a shard. */
  get shard(): Shard | null {
    return this.#shard;
  }

  /**
   * The client a statement of `plan` on `shard` runs on. The first such statement binds the
   * transaction to `shard` and sends BEGIN and the queued savepoints; a later one for another shard
   * dooms the transaction and throws.
   */
  async client(shard: Shard, plan: RoutePlan): Promise<PoolClientLike> {
    if (this.#doomed !== null) throw this.#doomed;
    const bound = this.#shard;
    if (bound === null) return this.#bind(shard);
    if (bound.id !== shard.id) {
      throw this.doom(`the transaction is bound to shard "${bound.id}" and this ${plan.statement}${plan.table === null ? '' : ` on "${plan.table}"`} belongs to shard "${shard.id}"`);
    }
    return this.#clients.client(bound.primary);
  }

  /** Binds the transaction to `shard` now and sends BEGIN (with one shard there is nothing to wait for). */
  async begin(shard: Shard): Promise<void> {
    if (this.#shard === null) await this.#bind(shard);
  }

  /** Refuses the transaction for `reason` (a statement that spans or changes shards); returns the error to throw. */
  doom(reason: string): CrossShardTransactionError | TransactionAbortedError {
    this.#doomed ??= new CrossShardTransactionError(
      `Cross-shard transaction refused: ${reason}. A transaction runs on one shard; nothing of it will commit. Split the work into one transaction per shard.`,
      { boundShard: this.#shard?.id ?? null },
    );
    return this.#doomed;
  }

  /** Runs a savepoint command now, or after BEGIN if the transaction is not bound yet. */
  async savepoint(command: CompiledQuery, kind: SavepointCommand, name: string): Promise<void> {
    if (this.#shard !== null) return this.#send(this.#shard, command);
    // Not bound yet: nothing ran since the savepoint, so rolling back to it or releasing it only edits the queue.
    if (kind === 'savepoint') {
      this.#deferred.push({ name, command });
      return;
    }
    // Matched by name, not by SQL text: a name that needs quoting (a"b) is compiled as "a""b".
    const at = this.#deferred.findLastIndex((s) => s.name === name);
    // PostgreSQL refuses a savepoint that does not exist (3B001); send the command so it does, at BEGIN.
    if (at < 0) this.#deferred.push({ name, command });
    else this.#deferred.splice(kind === 'release' ? at : at + 1);
  }

  /**
   * Sends COMMIT to the bound shard (nothing when no statement bound it). A doomed transaction is
   * rolled back instead and its error thrown: a cross-shard refusal as a CrossShardTransactionError
   * that says nothing committed, a failed BEGIN as its TransactionAbortedError.
   */
  async commit(): Promise<void> {
    const doomed = this.#doomed;
    if (doomed !== null) {
      if (this.#began) await this.#send(this.#shard!, CompiledQuery.raw('rollback'));
      if (doomed instanceof TransactionAbortedError) throw doomed;
      throw new CrossShardTransactionError(`The transaction was rolled back, not committed: ${doomed.message}`, { ...doomed.context });
    }
    if (this.#shard !== null) await this.#send(this.#shard, CompiledQuery.raw('commit'));
  }

  /** Sends ROLLBACK when BEGIN was sent. */
  async rollback(): Promise<void> {
    if (this.#began) await this.#send(this.#shard!, CompiledQuery.raw('rollback'));
  }

  async #bind(shard: Shard): Promise<PoolClientLike> {
    this.#shard = shard;
    try {
      const client = await this.#clients.client(shard.primary);
      await runOn(client, this.#begin.sql, this.#begin.parameters);
      this.#began = true;
      for (const { command } of this.#deferred.splice(0)) await runOn(client, command.sql, command.parameters);
      return client;
    } catch (error) {
      // Without BEGIN, later statements would autocommit one by one: the transaction is over, and
      // the client, in an unknown state, is closed when the connection is released.
      this.#clients.discardOnRelease();
      this.#doomed = new TransactionAbortedError(`The transaction could not start on shard "${shard.id}"; roll it back and retry: ${(error as Error).message}`, error, { shardId: shard.id });
      throw error;
    }
  }

  async #send(shard: Shard, command: CompiledQuery): Promise<void> {
    await runOn(await this.#clients.client(shard.primary), command.sql, command.parameters);
  }
}
