import { AsyncLocalStorage } from 'node:async_hooks';
import { PostgresQueryCompiler, type CompiledQuery, type RootOperationNode } from 'kysely';
import { ReadYourWritesContext } from '../../replication/read-your-writes';
import { ReplicaRouter, type ReplicaStatus } from '../../replication/replica-router';
import { ErrorCodes, KyselyScaleError } from '../../kernel/errors';
import { TopologyError } from '../../cluster/cluster-errors';
import { planMayWrite, type RoutePlan, type RoutingRules } from '../routing/route-planner';
import { ServerPools, pgPoolFactory, type PoolClientLike } from '../../cluster/server-pools';
import type { CursorConstructor, ResolvedShardedConfig } from './sharded-dialect-config';
import type { Shard, ServerSpec, Topology } from '../../cluster/topology';
import type { WriteEvent, WriteListener } from './write-event';

/**
 * The state one ShardedDialect shares with its driver and connections: the current topology, the
 * routing rules, the server pools and the write listeners.
 */
export class ShardedRuntime {
  readonly rules: RoutingRules;
  readonly #config: ResolvedShardedConfig;
  readonly #pools: ServerPools;
  readonly #compiler = new PostgresQueryCompiler();
  readonly #listeners = new Set<WriteListener>();
  #topology: Topology;
  #cursor: CursorConstructor | undefined;
  /** Present when plain reads may use replicas. */
  readonly #replicas: ReplicaRouter | undefined;
  readonly #readYourWrites = new AsyncLocalStorage<ReadYourWritesContext>();

  constructor(config: ResolvedShardedConfig) {
    this.#config = config;
    this.rules = config.rules;
    this.#topology = config.topology;
    this.#cursor = config.cursor;
    this.#pools = new ServerPools(config.createPool ?? pgPoolFactory(config.pool), (error, server) =>
      config.onPoolError(error, { redactedUrl: server.redactedUrl }),
    );
    this.#replicas =
      config.replicas.readFrom === 'replica'
        ? new ReplicaRouter(config.replicas, config.topology, { acquire: (server) => this.acquire(server), busy: (server) => this.#pools.busy(server) })
        : undefined;
  }

  get topology(): Topology {
    return this.#topology;
  }

  /** Swaps the topology. Queries already routed finish where they were sent; pools of dropped servers end once idle. */
  setTopology(next: Topology): void {
    if (next.slotCount !== this.#topology.slotCount) {
      throw new TopologyError(`The new topology has ${next.slotCount} slots but the cluster has ${this.#topology.slotCount}; the slot count never changes.`);
    }
    if (next.version <= this.#topology.version) {
      throw new TopologyError(`Topology version ${next.version} is not newer than the running version ${this.#topology.version}.`, { version: next.version });
    }
    if (next.shardById(this.rules.unshardedShardId) === undefined) {
      throw new TopologyError(`The new topology drops shard "${this.rules.unshardedShardId}", which holds the unsharded tables.`);
    }
    this.#topology = next;
    this.#replicas?.setTopology(next);
    const urls = new Set<string>();
    for (const shard of next.shards) for (const server of [shard.primary, ...shard.replicas]) urls.add(server.url);
    this.#pools.retainOnly(urls);
  }

  /**
   * The one place that chooses the server a statement on `shard` runs on: a replica for a plain
   * read when replica reads are on and one is eligible (for the current read-your-writes context,
   * if any); the primary for everything else, and for every statement that needs its session
   * (`inSession`: inside a transaction, or on a connection that ran raw SQL or DDL).
   */
  serverFor(shard: Shard, plan: RoutePlan | null, inSession: boolean): ServerSpec {
    const replicas = this.#replicas;
    if (replicas === undefined || inSession || plan === null || planMayWrite(plan) || plan.primaryOnly === true) {
      return shard.primary;
    }
    return replicas.serverForRead(shard, this.#readYourWrites.getStore()?.requiredPosition(shard.id)) ?? shard.primary;
  }

  /** Whether plain reads may go to replicas (`replicas.readFrom: 'replica'`). */
  get readsFromReplicas(): boolean {
    return this.#replicas !== undefined;
  }

  /** The read-your-writes context of the running async call, if any (never when reads stay on primaries). */
  get readYourWritesContext(): ReadYourWritesContext | undefined {
    return this.#replicas === undefined ? undefined : this.#readYourWrites.getStore();
  }

  /** Runs `fn` with `context` as the read-your-writes context of every statement it starts. */
  runWithReadYourWrites<T>(context: ReadYourWritesContext, fn: () => T): T {
    // Reads stay on primaries without replica reads; AsyncLocalStorage would only slow promises down.
    return this.#replicas === undefined ? fn() : this.#readYourWrites.run(context, fn);
  }

  /** Reports a replica read's outcome to the replica strategy. */
  replicaOutcome(server: ServerSpec, latencyMillis: number, ok: boolean): void {
    this.#replicas?.complete(server, latencyMillis, ok);
  }

  /** Takes a replica out of read service until its next successful check. */
  replicaFailed(server: ServerSpec, problem: string): void {
    this.#replicas?.markFailed(server, problem);
  }

  /** Measures replica lag and health now (no-op when replica reads are off). */
  refreshReplicas(): Promise<void> {
    return this.#replicas?.refresh() ?? Promise.resolve();
  }

  /** The last replica measurements (empty when replica reads are off). */
  replicaStatus(): ReplicaStatus[] {
    return this.#replicas?.status() ?? [];
  }

  acquire(server: ServerSpec): Promise<PoolClientLike> {
    if (this.#pools.destroyed) return Promise.reject(new KyselyScaleError(ErrorCodes.DESTROYED, 'The ShardedDialect was destroyed: create a new Kysely instance.'));
    return this.#pools.acquire(server);
  }

  /** Compiles a rewritten node with the original query's id (plugins keyed by query id keep working). */
  compile(node: RootOperationNode, original: CompiledQuery): CompiledQuery {
    return this.#compiler.compileQuery(node, original.queryId);
  }

  cursor(): CursorConstructor {
    // Loaded on first stream only, so importing the dialect does not load pg-cursor.
    this.#cursor ??= require('pg-cursor') as CursorConstructor;
    return this.#cursor;
  }

  get hasWriteListeners(): boolean {
    return this.#listeners.size > 0;
  }

  onWrite(listener: WriteListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emitWrites(events: readonly WriteEvent[]): void {
    const frozen = Object.freeze([...events]);
    for (const listener of this.#listeners) {
      try {
        listener(frozen);
      } catch {
        // A listener must not break the write that already happened.
      }
    }
  }

  destroy(): Promise<void> {
    this.#replicas?.close();
    return this.#pools.destroy();
  }
}
