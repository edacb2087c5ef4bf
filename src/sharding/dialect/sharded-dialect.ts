import {
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
} from 'kysely';
import { resolveShardedConfig, type ShardedDialectConfig } from './sharded-dialect-config';
import { ShardedDriver } from './sharded-driver';
import { ShardedRuntime } from './sharded-runtime';
import { installSlotFunctions } from '../../cluster/slot-function-sql';
import type { Topology } from '../../cluster/topology';
import type { WriteListener } from './write-event';
import { ReadYourWritesContext } from '../../replication/read-your-writes';
import type { ReplicaStatus } from '../../replication/replica-router';
import type { ReplicaEventListener } from '../../replication/replica-events';

/**
 * A Kysely dialect that spreads tables over PostgreSQL shards by a hashed key. User code keeps its
 * Kysely queries; the dialect routes each statement from its operation-node tree.
 *
 * ```ts
 * const dialect = new ShardedDialect({ topology, shardKeys: { orders: 'user_id', users: 'id' } })
 * const db = new Kysely<DB>({ dialect })
 * ```
 *
 * Use one Kysely instance per dialect: `db.destroy()` closes the dialect's pools.
 */
export class ShardedDialect implements Dialect {
  readonly #runtime: ShardedRuntime;

  constructor(config: ShardedDialectConfig) {
    this.#runtime = new ShardedRuntime(resolveShardedConfig(config));
  }

  /** The topology in use. */
  get topology(): Topology {
    return this.#runtime.topology;
  }

  /**
   * Replaces the topology (a newer version with the same slot count). Statements already routed
   * finish on the servers they were sent to; new statements use the new map.
   */
  setTopology(topology: Topology): void {
    this.#runtime.setTopology(topology);
  }

  /**
   * Subscribes to write events: called after a write succeeded (outside a transaction) or after its
   * transaction committed. Returns the unsubscribe function.
   */
  onWrite(listener: WriteListener): () => void {
    return this.#runtime.writes.subscribe(listener);
  }

  /**
   * Runs `fn` so that every read it starts sees the writes it made before (read-your-writes): a
   * read goes to a replica only once that replica has replayed past the caller's last write on the
   * shard, else to the primary. Pass a saved context to carry the guarantee across requests.
   * Only matters with `replicas: { readFrom: 'replica' }`. Writes inside it cost one extra
   * round trip (the primary's WAL position is read after each).
   */
  readYourWrites<T>(fn: () => T, context: ReadYourWritesContext = new ReadYourWritesContext()): T {
    return this.#runtime.runWithReadYourWrites(context, fn);
  }

  /** Measures the lag and health of every replica now (when `replicas.lagCheckIntervalMillis` is 0, the only measurement). */
  refreshReplicas(): Promise<void> {
    return this.#runtime.refreshReplicas();
  }

  /** What was last measured of each replica (empty unless replica reads are on). */
  replicaStatus(): ReplicaStatus[] {
    return this.#runtime.replicaStatus();
  }

  /**
   * Subscribes to every change of a replica's or a primary's state (a replica refused, unreachable,
   * ejected, lagging, serving again; a primary down, up, demoted), each with the shard id, the
   * server (password redacted) and the reason. Returns the unsubscribe function. Only with replica reads on.
   */
  onReplicaEvent(listener: ReplicaEventListener): () => void {
    return this.#runtime.onReplicaEvent(listener);
  }

  /** Installs the SQL twin of the slot function (`kysely_scale_slot`) on every shard's primary. */
  installSlotFunctions(): Promise<void> {
    return installSlotFunctions(this.#runtime.topology, (server) => this.#runtime.acquire(server));
  }

  createDriver(): Driver {
    return new ShardedDriver(this.#runtime);
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}
