import { AsyncLocalStorage } from 'node:async_hooks';
import { PostgresQueryCompiler, type CompiledQuery, type RootOperationNode } from 'kysely';
import { ReadYourWritesContext } from '../../replication/read-your-writes';
import { ReplicaRouter, type ReplicaStatus } from '../../replication/replica-router';
import type { Clock } from '../../kernel/clock';
import { TopologyError } from '../../cluster/cluster-errors';
import type { RoutingRules } from '../routing/route-planner';
import { ServerPools, pgPoolFactory, type PoolClientLike } from '../../cluster/server-pools';
import type { CursorConstructor, ResolvedShardedConfig } from './sharded-dialect-config';
import type { ServerSpec, Topology } from '../../cluster/topology';
import { DialectDestroyedError } from '../sharding-errors';
import { WriteEvents } from './write-events';

/**
 * The state one ShardedDialect shares with its driver and connections: the current topology, the
 * routing rules, the server pools, the replica router, the clock and the write listeners.
 */
export class ShardedRuntime {
  readonly rules: RoutingRules;
  readonly clock: Clock;
  /** The write listeners of the dialect. */
  readonly writes = new WriteEvents();
  /** Present when plain reads may use replicas (`replicas.readFrom: 'replica'`). */
  readonly replicas: ReplicaRouter | undefined;
  readonly #pools: ServerPools;
  readonly #compiler = new PostgresQueryCompiler();
  #topology: Topology;
  #cursor: CursorConstructor | undefined;
  readonly #readYourWrites = new AsyncLocalStorage<ReadYourWritesContext>();

  constructor(config: ResolvedShardedConfig) {
    this.rules = config.rules;
    this.clock = config.clock;
    this.#topology = config.topology;
    this.#cursor = config.cursor;
    this.#pools = new ServerPools(config.createPool ?? pgPoolFactory(config.pool), (error, server) =>
      config.onPoolError(error, { redactedUrl: server.redactedUrl }),
    );
    this.replicas =
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
    this.replicas?.setTopology(next);
    const urls = new Set<string>();
    for (const shard of next.shards) for (const server of [shard.primary, ...shard.replicas]) urls.add(server.url);
    this.#pools.retainOnly(urls);
  }

  /** The read-your-writes context of the running async call, if any (never when reads stay on primaries). */
  get readYourWritesContext(): ReadYourWritesContext | undefined {
    return this.replicas === undefined ? undefined : this.#readYourWrites.getStore();
  }

  /** Runs `fn` with `context` as the read-your-writes context of every statement it starts. */
  runWithReadYourWrites<T>(context: ReadYourWritesContext, fn: () => T): T {
    // Reads stay on primaries without replica reads; AsyncLocalStorage would only slow promises down.
    return this.replicas === undefined ? fn() : this.#readYourWrites.run(context, fn);
  }

  /** Measures replica lag and health now (no-op when replica reads are off). */
  refreshReplicas(): Promise<void> {
    return this.replicas?.refresh() ?? Promise.resolve();
  }

  /** The last replica measurements (empty when replica reads are off). */
  replicaStatus(): ReplicaStatus[] {
    return this.replicas?.status() ?? [];
  }

  /** Checks out a client of `server`; refused once the dialect is destroyed. */
  acquire(server: ServerSpec): Promise<PoolClientLike> {
    if (this.#pools.destroyed) return Promise.reject(new DialectDestroyedError());
    return this.#pools.acquire(server);
  }

  /** Compiles a rewritten node with the original query's id (plugins keyed by query id keep working). */
  compile(node: RootOperationNode, original: CompiledQuery): CompiledQuery {
    return this.#compiler.compileQuery(node, original.queryId);
  }

  /** The cursor class `stream()` reads with. */
  cursor(): CursorConstructor {
    // Loaded on first stream only, so importing the dialect does not load pg-cursor.
    this.#cursor ??= require('pg-cursor') as CursorConstructor;
    return this.#cursor;
  }

  /** Stops the replica checks and ends every pool. */
  destroy(): Promise<void> {
    this.replicas?.close();
    return this.#pools.destroy();
  }
}
