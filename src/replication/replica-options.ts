/** Options of reads from streaming replicas (`ShardedDialectConfig.replicas`), their defaults and their validation. */
import type { Strategy } from '../balancer/balancer-strategy';
import { ConfigError } from '../kernel/errors';
import { describeValue, requireInteger, requireKnownKeys, requireObject, requireOneOf } from '../kernel/validate';

/** Options of reads from streaming replicas (`ShardedDialectConfig.replicas`). */
export interface ReplicaReadOptions {
  /**
   * Where plain reads outside transactions go: `'primary'`, or `'replica'` (a replica of the shard
   * that is proven to stream from its primary, healthy and within the lag bounds; the primary when
   * none is). Writes, transactions, `SELECT … FOR UPDATE/SHARE` and raw SQL always use the primary.
   * @default 'primary'
   */
  readFrom?: 'primary' | 'replica';
  /** A replica that may be more than this many bytes of WAL behind its primary serves no reads (estimated between checks from the primary's WAL rate). @default 16777216 (16 MiB) */
  maxLagBytes?: number;
  /**
   * A replica serves a read only while it provably holds everything its primary had this many ms
   * ago (it replayed a position the primary was seen at no longer ago than this). Also the bound of
   * reads while the primary is down.
   * @default 30000
   */
  maxLagMillis?: number;
  /**
   * How often each replica (and each primary) is checked, on its own timer; 0 checks only when
   * `dialect.refreshReplicas()` is called. Until a replica's first successful check it serves no reads.
   * @default 1000
   */
  lagCheckIntervalMillis?: number;
  /** A check (connection and query) that takes longer fails; the server serves no reads until one succeeds. @default 2000 */
  checkTimeoutMillis?: number;
  /**
   * The client-side deadline of a read on a replica (checkout and query). A read past it runs again
   * on another replica or the primary, and the replica leaves rotation until a later check succeeds.
   * @default 2000
   */
  readTimeoutMillis?: number;
  /**
   * A replica with this many reads in flight that started after its last answer takes no new read
   * until it answers again, so a replica that stopped answering cannot take every reader, whatever the strategy.
   * @default 4
   */
  maxUnansweredReads?: number;
  /**
   * How long a read-your-writes read waits for a replica to replay the caller's position (checked on
   * demand) before it reads the primary. While the primary is down it waits up to `readTimeoutMillis`.
   * @default 100
   */
  replayWaitMillis?: number;
  /** Chooses among the eligible replicas of a shard (from `kysely-scale/balancer`). @default leastConnections() */
  strategy?: Strategy;
}

/** Defaults of {@link ReplicaReadOptions}. */
export const REPLICA_READ_DEFAULTS = Object.freeze({
  readFrom: 'primary' as const,
  maxLagBytes: 16 * 1024 * 1024,
  maxLagMillis: 30_000,
  lagCheckIntervalMillis: 1000,
  checkTimeoutMillis: 2000,
  readTimeoutMillis: 2000,
  maxUnansweredReads: 4,
  replayWaitMillis: 100,
});

/** The validated form of {@link ReplicaReadOptions}. */
export interface ResolvedReplicaReadOptions {
  readonly readFrom: 'primary' | 'replica';
  readonly maxLagBytes: number;
  readonly maxLagMillis: number;
  readonly lagCheckIntervalMillis: number;
  readonly checkTimeoutMillis: number;
  readonly readTimeoutMillis: number;
  readonly maxUnansweredReads: number;
  readonly replayWaitMillis: number;
  readonly strategy: Strategy | undefined;
}

const KEYS: readonly (keyof ReplicaReadOptions)[] = [
  'readFrom', 'maxLagBytes', 'maxLagMillis', 'lagCheckIntervalMillis', 'checkTimeoutMillis', 'readTimeoutMillis', 'maxUnansweredReads', 'replayWaitMillis', 'strategy',
];

/** Validates replica options at construction; errors are ConfigErrors naming the option (`replicas.<name>`). */
export function resolveReplicaReadOptions(options: ReplicaReadOptions = {}): ResolvedReplicaReadOptions {
  requireObject('replicas', options);
  requireKnownKeys('replicas', options, KEYS);
  const d = REPLICA_READ_DEFAULTS;
  const readFrom = requireOneOf('replicas.readFrom', options.readFrom ?? d.readFrom, ['primary', 'replica'] as const);
  const maxLagBytes = requireInteger('replicas.maxLagBytes', options.maxLagBytes ?? d.maxLagBytes, 0);
  const maxLagMillis = requireInteger('replicas.maxLagMillis', options.maxLagMillis ?? d.maxLagMillis, 1);
  const lagCheckIntervalMillis = requireInteger('replicas.lagCheckIntervalMillis', options.lagCheckIntervalMillis ?? d.lagCheckIntervalMillis, 0);
  const checkTimeoutMillis = requireInteger('replicas.checkTimeoutMillis', options.checkTimeoutMillis ?? d.checkTimeoutMillis, 1);
  const readTimeoutMillis = requireInteger('replicas.readTimeoutMillis', options.readTimeoutMillis ?? d.readTimeoutMillis, 1);
  const maxUnansweredReads = requireInteger('replicas.maxUnansweredReads', options.maxUnansweredReads ?? d.maxUnansweredReads, 1);
  const replayWaitMillis = requireInteger('replicas.replayWaitMillis', options.replayWaitMillis ?? d.replayWaitMillis, 0);
  const strategy = options.strategy;
  if (strategy !== undefined && (strategy === null || typeof strategy !== 'object' || typeof strategy.pick !== 'function')) {
    throw new ConfigError('replicas.strategy', `must be a balancer Strategy (an object with pick(), e.g. roundRobin()), got ${describeValue(strategy)}`);
  }
  return Object.freeze({ readFrom, maxLagBytes, maxLagMillis, lagCheckIntervalMillis, checkTimeoutMillis, readTimeoutMillis, maxUnansweredReads, replayWaitMillis, strategy });
}
