import { AsyncLocalStorage } from 'node:async_hooks';
import { PostgresQueryCompiler, type CompiledQuery, type RootOperationNode } from 'kysely';
import { ReadYourWritesContext } from '../../replication/read-your-writes';
import { ReplicaRouter, type ReplicaStatus } from '../../replication/replica-router';
import type { ReplicaEventListener } from '../../replication/replica-events';
import type { Clock } from '../../kernel/clock';
import { TopologyError } from '../../cluster/cluster-errors';
import type { RoutingRules } from '../routing/route-planner';
import { ServerPools, pgPoolFactory, type PoolClientLike } from '../../cluster/server-pools';
import type { CursorConstructor, ResolvedShardedConfig } from './sharded-dialect-config';
import type { ServerSpec, Topology } from '../../cluster/topology';
import { DialectDestroyedError } from '../sharding-errors';
import { WriteEvents } from './write-events';
import { StatementTelemetry } from './statement-telemetry';
import { SET_TOPOLOGY_VERSION_SQL } from '../../cluster/topology-fence';
import type { TopologySource } from '../../cluster/topology-catch-up';

/**
 * The state one ShardedDialect shares with its driver and connections: the current topology, the
 * routing rules, the server pools, the replica router, the clock and the write listeners.
 */
export class ShardedRuntime {
  #rules: RoutingRules;
  /** Where the unsharded tables live for a topology that does not record it. */
  readonly #defaultUnshardedShardId: string;
  readonly clock: Clock;
  /** The write listeners of the dialect. */
  readonly writes = new WriteEvents();
  /** Present when plain reads may use replicas (`replicas.readFrom: 'replica'`). */
  readonly replicas: ReplicaRouter | undefined;
  /** The route hook, spans and metrics of statements. */
  readonly telemetry: StatementTelemetry;
  readonly #pools: ServerPools;
  readonly #compiler = new PostgresQueryCompiler();
  #topology: Topology;
  #cursor: CursorConstructor | undefined;
  readonly #readYourWrites = new AsyncLocalStorage<ReadYourWritesContext>();
  /** Where a refused statement's router reloads the topology; undefined: refusals fail with StaleTopologyError. */
  readonly topologySource: TopologySource | undefined;
  readonly fenceWaitMillis: number;
  readonly #fenceSessions: boolean;
  /** Whether repeated scatter statements run as prepared statements. */
  readonly prepareScatterStatements: boolean;
  /** The topology version each client's session carries (set on checkout when it differs). */
  readonly #sessionVersions = new WeakMap<PoolClientLike, number>();
  /** The version new connections of the dialect's own pool of a server start with (the pool's startup option). */
  readonly #startupVersions = new Map<string, number>();

  constructor(config: ResolvedShardedConfig) {
    this.#rules = config.rules;
    this.#defaultUnshardedShardId = config.defaultUnshardedShardId;
    this.clock = config.clock;
    this.#topology = config.topology;
    this.#cursor = config.cursor;
    this.topologySource = config.topologySource;
    this.fenceWaitMillis = config.fenceWaitMillis;
    this.#fenceSessions = config.fenceSessions;
    this.prepareScatterStatements = config.prepareScatterStatements;
    const ownPools = config.createPool === undefined && config.fenceSessions;
    const createPool = config.createPool ?? pgPoolFactory(config.pool, ownPools ? () => this.#topology.version : undefined, config.prepareScatterStatements);
    this.#pools = new ServerPools(
      ownPools
        ? (server) => {
            this.#startupVersions.set(server.url, this.#topology.version);
            return createPool(server);
          }
        : createPool,
      (error, server) => config.onPoolError(error, { redactedUrl: server.redactedUrl }),
    );
    this.replicas =
      config.replicas.readFrom === 'replica'
        ? new ReplicaRouter(
            config.replicas,
            config.topology,
            // Checks have pools of their own (never queued behind reads; a primary refused to statements is still checked).
            { createPool: config.createPool ?? pgPoolFactory({ ...config.pool, max: 2 }), busy: (server) => this.#pools.busy(server) },
            config.clock,
            { onTopologyChange: (effective) => this.#routeBy(effective) },
          )
        : undefined;
    this.telemetry = new StatementTelemetry(config.onRoute, config.clock, { pools: () => this.#pools.counts(), replicas: () => this.replicaStatus() });
  }

  get topology(): Topology {
    return this.#topology;
  }

  /** The routing rules; their `unshardedShardId` follows the holder the topology records (else the option). */
  get rules(): RoutingRules {
    return this.#rules;
  }

  /** Swaps the topology. Queries already routed finish where they were sent; pools of dropped servers end once idle. */
  setTopology(next: Topology): void {
    if (next.slotCount !== this.#topology.slotCount) {
      throw new TopologyError(`The new topology has ${next.slotCount} slots but the cluster has ${this.#topology.slotCount}; the slot count never changes.`);
    }
    if (next.version <= this.#topology.version) {
      throw new TopologyError(`Topology version ${next.version} is not newer than the running version ${this.#topology.version}.`, { version: next.version });
    }
    // The holder the topology records wins; a topology recording none keeps the option's (contract of ShardedDialectConfig.unshardedShardId).
    const holder = next.unshardedShardId ?? this.#defaultUnshardedShardId;
    if (next.shardById(holder) === undefined) {
      throw new TopologyError(`The new topology drops shard "${holder}", which holds the unsharded tables, and records no other holder.`);
    }
    // With replica reads on, a standby found promoted stays its shard's primary in what routes use.
    this.#routeBy(this.replicas?.setTopology(next) ?? next);
    if (holder !== this.#rules.unshardedShardId) this.#rules = Object.freeze({ ...this.#rules, unshardedShardId: holder });
  }

  /** Routes by `topology` from now on; pools of servers it no longer lists end once idle. */
  #routeBy(topology: Topology): void {
    this.#topology = topology;
    const urls = new Set<string>();
    for (const shard of topology.shards) for (const server of [shard.primary, ...shard.replicas]) urls.add(server.url);
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

  /** Subscribes to replica and primary state changes (none when replica reads are off). */
  onReplicaEvent(listener: ReplicaEventListener): () => void {
    return this.replicas?.onEvent(listener) ?? (() => undefined);
  }

  /** Checks out a client of `server`, its session tagged with the current topology version; refused once the dialect is destroyed. */
  acquire(server: ServerSpec): Promise<PoolClientLike> {
    if (this.#pools.destroyed) return Promise.reject(new DialectDestroyedError());
    // A primary known down or demoted is refused at once, with a coded error naming its shard.
    const refused = this.replicas?.refusal(server);
    if (refused !== undefined) return Promise.reject(refused);
    const replicas = this.replicas;
    const pending = replicas === undefined ? this.#pools.acquire(server) : this.#pools.acquire(server).catch((error: unknown) => Promise.reject(replicas.acquireFailed(server, error)));
    // No version change since this server's own pool was made: every connection of it carries the current version.
    if (!this.#fenceSessions || this.#startupVersions.get(server.url) === this.#topology.version) return pending;
    return pending.then((client) => {
      const version = this.#topology.version;
      const current = this.#sessionVersions.get(client) ?? this.#startupVersions.get(server.url);
      if (current === version) {
        this.#sessionVersions.set(client, version);
        return client;
      }
      return this.#tag(client, version).then(
        () => client,
        (error: unknown) => {
          client.release(true);
          throw error;
        },
      );
    });
  }

  /** Brings a held client's session to the current topology version (before a statement refused by a fence runs again). */
  retag(client: PoolClientLike): Promise<void> {
    const version = this.#topology.version;
    if (!this.#fenceSessions || this.#sessionVersions.get(client) === version) return Promise.resolve();
    return this.#tag(client, version);
  }

  #tag(client: PoolClientLike, version: number): Promise<void> {
    return client.query(SET_TOPOLOGY_VERSION_SQL, [String(version)]).then(() => {
      this.#sessionVersions.set(client, version);
    });
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
    this.telemetry.close();
    const checks = this.replicas?.close();
    return Promise.all([checks, this.#pools.destroy()]).then(() => undefined);
  }
}
