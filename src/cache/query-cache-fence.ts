/**
 * Keeps replica reads out of the query cache until they are fresh. With replica reads on, a load
 * first reads each target shard's primary WAL position, then runs the query in a read-your-writes
 * context that requires it: the dialect reads a replica only if it had replayed that far, else the
 * primary. So a result is never older than the moment its load started, and every invalidation the
 * load could have been overtaken by without noticing came earlier (an invalidation during the load
 * marks it, and its fill is dropped): the cache never stores rows from a replica that had not
 * replayed the write that invalidated them, with or without a read-your-writes context of the
 * caller's (the fence is at least as strict as that context).
 *
 * Before, with `replicas.readFrom: 'replica'`, a read after a write could refill the cache from a
 * replica that had not replayed the write, and serve those rows until the TTL.
 *
 * The cost: one round trip to the primary of each replicated target shard per miss, and a replica
 * serves a miss only when its last lag check saw it at the primary's current position (a busy shard's
 * misses go to its primary). Turn it off with `replicaFence: false` if stale results are acceptable.
 */
import { sql, type Kysely } from 'kysely';
import { ConfigError } from '../kernel/errors';
import { ReadYourWritesContext } from '../replication/read-your-writes';
import { withPrimary, withShard } from '../sharding/routing/route-hint';
import { parseLsn, PRIMARY_WAL_END_SQL } from '../cluster/wal-position';

/** What the query cache needs of a `ShardedDialect` to fence replica reads; a `ShardedDialect` fits. */
export interface ReplicaFenceDialect {
  readYourWrites<T>(fn: () => T, context: ReadYourWritesContext): T;
  /** Replicas that serve reads (empty when replica reads are off). */
  replicaStatus(): readonly { readonly shardId: string }[];
  readonly topology: { readonly shards: readonly { readonly id: string }[] };
}

/**
 * Whether `source` can fence replica reads (a `ShardedDialect`).
 * @internal
 */
export function isReplicaFenceDialect(source: unknown): source is ReplicaFenceDialect {
  const d = source as Partial<ReplicaFenceDialect> | null;
  return typeof d?.readYourWrites === 'function' && typeof d.replicaStatus === 'function' && typeof d.topology === 'object';
}

// Beyond any real WAL position: when the primary's position cannot be read, no replica qualifies.
const UNKNOWN_POSITION = 1n << 64n;

/** @internal */
export class ReplicaFence {
  constructor(private readonly dialect: ReplicaFenceDialect) {}

  /**
   * Runs `load` so that it reads no replica of the target shards (`shardId`, or every shard when
   * null) that had not replayed what their primaries had written when it started.
   */
  async run<T>(db: unknown, shardId: string | null, load: () => Promise<T>): Promise<T> {
    const replicated = new Set(this.dialect.replicaStatus().map((s) => s.shardId));
    if (replicated.size === 0) return load(); // replica reads are off: every read goes to a primary
    const targets = (shardId === null ? this.dialect.topology.shards.map((s) => s.id) : [shardId]).filter((id) => replicated.has(id));
    if (targets.length === 0) return load();
    const kysely = db as Partial<Kysely<any>>;
    if (typeof kysely.withPlugin !== 'function') {
      throw new ConfigError('db', 'with replica reads on, pass the Kysely instance (the query cache reads the primaries\' WAL positions through it)');
    }
    const context = new ReadYourWritesContext();
    const positions = await Promise.all(targets.map((id) => primaryPosition(kysely as Kysely<any>, id)));
    targets.forEach((id, i) => context.noteWrite(id, positions[i]!));
    return this.dialect.readYourWrites(load, context);
  }
}

async function primaryPosition(db: Kysely<any>, shardId: string): Promise<bigint> {
  try {
    const row = await db
      .withPlugin(withShard(shardId))
      .withPlugin(withPrimary())
      .selectNoFrom(sql<string>`${sql.raw(PRIMARY_WAL_END_SQL)}`.as('lsn'))
      .executeTakeFirstOrThrow();
    return parseLsn(row.lsn);
  } catch {
    return UNKNOWN_POSITION;
  }
}
