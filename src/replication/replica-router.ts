import { ConfigError } from '../kernel/errors';
import type { BalancedInstance, NonEmptyArray } from '../balancer/balancer-instance';
import type { Strategy } from '../balancer/balancer-strategy';
import { leastConnections } from '../balancer/strategies/least-connections';
import type { PoolClientLike } from '../cluster/server-pools';
import type { ServerSpec, Shard, Topology } from '../cluster/topology';
import { formatLsn, parseLsn } from '../cluster/wal-position';

/** Options of reads from streaming replicas (`ShardedDialectConfig.replicas`). */
export interface ReplicaReadOptions {
  /**
   * Where plain reads outside transactions go: `'primary'`, or `'replica'` (a replica of the shard
   * that is healthy and close enough behind its primary; the primary when none is). Writes,
   * transactions, `SELECT … FOR UPDATE/SHARE` and raw SQL always use the primary.
   * @default 'primary'
   */
  readFrom?: 'primary' | 'replica';
  /** A replica more than this many bytes of WAL behind its primary serves no reads. @default 16777216 (16 MiB) */
  maxLagBytes?: number;
  /**
   * How often the lag and health of every replica are measured; 0 measures only when
   * `dialect.refreshReplicas()` is called. Until its first measurement a replica serves no reads.
   * @default 1000
   */
  lagCheckIntervalMillis?: number;
  /** A check (connection and query) that takes longer fails, and the replica serves no reads until one succeeds. @default 2000 */
  checkTimeoutMillis?: number;
  /** Chooses among the eligible replicas of a shard (from `kysely-scale/balancer`). @default leastConnections() */
  strategy?: Strategy;
}

/** Defaults of {@link ReplicaReadOptions}. */
export const REPLICA_READ_DEFAULTS = Object.freeze({
  readFrom: 'primary' as const,
  maxLagBytes: 16 * 1024 * 1024,
  lagCheckIntervalMillis: 1000,
  checkTimeoutMillis: 2000,
});

/** The validated form of {@link ReplicaReadOptions}. */
export interface ResolvedReplicaReadOptions {
  readonly readFrom: 'primary' | 'replica';
  readonly maxLagBytes: number;
  readonly lagCheckIntervalMillis: number;
  readonly checkTimeoutMillis: number;
  readonly strategy: Strategy | undefined;
}

/** Validates replica options; names the option at fault. */
export function resolveReplicaReadOptions(options: ReplicaReadOptions = {}): ResolvedReplicaReadOptions {
  const readFrom = options.readFrom ?? REPLICA_READ_DEFAULTS.readFrom;
  if (readFrom !== 'primary' && readFrom !== 'replica') throw new ConfigError('replicas.readFrom', `must be 'primary' or 'replica'; got ${JSON.stringify(readFrom)}`);
  const maxLagBytes = options.maxLagBytes ?? REPLICA_READ_DEFAULTS.maxLagBytes;
  if (!Number.isSafeInteger(maxLagBytes) || maxLagBytes < 0) throw new ConfigError('replicas.maxLagBytes', `must be an integer ≥ 0; got ${String(maxLagBytes)}`);
  const lagCheckIntervalMillis = options.lagCheckIntervalMillis ?? REPLICA_READ_DEFAULTS.lagCheckIntervalMillis;
  if (!Number.isInteger(lagCheckIntervalMillis) || lagCheckIntervalMillis < 0) {
    throw new ConfigError('replicas.lagCheckIntervalMillis', `must be an integer ≥ 0; got ${String(lagCheckIntervalMillis)}`);
  }
  const checkTimeoutMillis = options.checkTimeoutMillis ?? REPLICA_READ_DEFAULTS.checkTimeoutMillis;
  if (!Number.isInteger(checkTimeoutMillis) || checkTimeoutMillis < 1) throw new ConfigError('replicas.checkTimeoutMillis', `must be an integer ≥ 1; got ${String(checkTimeoutMillis)}`);
  if (options.strategy !== undefined && typeof options.strategy.pick !== 'function') throw new ConfigError('replicas.strategy', 'must be a balancer Strategy (an object with pick())');
  return Object.freeze({ readFrom, maxLagBytes, lagCheckIntervalMillis, checkTimeoutMillis, strategy: options.strategy });
}

/** What the router last measured of one replica. */
export interface ReplicaStatus {
  readonly shardId: string;
  /** The replica's URL with its password redacted. */
  readonly server: string;
  /** Whether its last check succeeded and it is still a standby. */
  readonly healthy: boolean;
  /** WAL bytes it was behind its primary at the last check; `null` before the first. */
  readonly lagBytes: number | null;
  /** The position it had replayed to at the last check (`pg_lsn` text); `null` before the first. */
  readonly replayedTo: string | null;
  /** Why it is unhealthy, when it is. */
  readonly problem: string | null;
  /** Whether it serves reads now. */
  readonly eligible: boolean;
}

/** A replica as the balancer strategies see it: its in-flight count is its pool's busy connections. */
class ReplicaMember implements BalancedInstance {
  readonly id: string;
  readonly address: string;
  readonly weight = 1;
  readonly effectiveWeight = 1;
  readonly metadata = {};
  readonly latencyEwmaMillis = undefined;
  healthy = false;
  replayedTo: bigint | null = null;
  lagBytes: number | null = null;
  problem: string | null = 'not checked yet';
  /** When the last check finished (ms, monotonic); measurements older than a few intervals do not count. */
  checkedAt = -Infinity;
  /** When a read last failed to reach it: a check round that began before cannot bring it back. */
  failedAt = -Infinity;

  /** Takes over what `other` measured (the same server in a new topology). */
  copyState(other: ReplicaMember): void {
    this.healthy = other.healthy;
    this.replayedTo = other.replayedTo;
    this.lagBytes = other.lagBytes;
    this.problem = other.problem;
    this.checkedAt = other.checkedAt;
    this.failedAt = other.failedAt;
  }

  constructor(
    readonly shard: Shard,
    readonly server: ServerSpec,
    readonly busy: (server: ServerSpec) => number,
  ) {
    this.id = server.redactedUrl;
    this.address = server.redactedUrl;
  }

  get inflight(): number {
    return this.busy(this.server);
  }
}

/** How the router reaches servers: the dialect's pools. */
export interface ReplicaRouterPools {
  acquire(server: ServerSpec): Promise<PoolClientLike>;
  /** Connections of `server`'s pool in use or waited for (0 when it has no pool yet). */
  busy(server: ServerSpec): number;
}

/**
 * Sends plain reads to streaming replicas. It measures every replica's lag behind its primary
 * (`pg_current_wal_insert_lsn()` against `pg_last_wal_replay_lsn()`) on a timer or on demand, and
 * picks, per read, one replica that is healthy, no further behind than `maxLagBytes`, and (for
 * read-your-writes) has replayed past the caller's last write; otherwise the caller reads the primary.
 */
export class ReplicaRouter {
  readonly #options: ResolvedReplicaReadOptions;
  readonly #strategy: Strategy;
  readonly #pools: ReplicaRouterPools;
  #members = new Map<string, ReplicaMember[]>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #refreshing: Promise<void> | undefined;

  constructor(options: ResolvedReplicaReadOptions, topology: Topology, pools: ReplicaRouterPools) {
    this.#options = options;
    this.#strategy = options.strategy ?? leastConnections();
    this.#pools = pools;
    this.setTopology(topology);
    if (options.lagCheckIntervalMillis > 0) {
      this.#timer = setInterval(() => void this.refresh(), options.lagCheckIntervalMillis);
      this.#timer.unref(); // checks never keep a process alive
      void this.refresh();
    }
  }

  /** Follows a new topology: replicas it still lists keep their measurements. */
  setTopology(topology: Topology): void {
    const previous = new Map<string, ReplicaMember>();
    for (const list of this.#members.values()) for (const m of list) previous.set(`${m.shard.id} ${m.server.url}`, m);
    const next = new Map<string, ReplicaMember[]>();
    for (const shard of topology.shards) {
      if (shard.replicas.length === 0) continue;
      next.set(
        shard.id,
        shard.replicas.map((server) => {
          const member = new ReplicaMember(shard, server, this.#pools.busy);
          const kept = previous.get(`${shard.id} ${server.url}`);
          if (kept !== undefined) member.copyState(kept);
          return member;
        }),
      );
    }
    this.#members = next;
  }

  /** The replica a plain read on `shard` should use, or `undefined` for the primary. */
  serverForRead(shard: Shard, requiredPosition: bigint | undefined): ServerSpec | undefined {
    const members = this.#members.get(shard.id);
    if (members === undefined) return undefined;
    const now = performance.now();
    const eligible = members.filter((m) => this.#eligible(m, requiredPosition, now));
    if (eligible.length === 0) return undefined;
    try {
      return (this.#strategy.pick(eligible as unknown as NonEmptyArray<BalancedInstance>, {}) as ReplicaMember).server;
    } catch {
      return undefined; // a strategy that cannot choose leaves the read to the primary
    }
  }

  /** Tells the strategy how a read on `server` went (response-time strategies such as peakEwma() learn from it). */
  complete(server: ServerSpec, latencyMillis: number, ok: boolean): void {
    const onComplete = this.#strategy.onComplete;
    if (onComplete === undefined) return;
    for (const list of this.#members.values()) {
      for (const m of list) if (m.server === server) onComplete.call(this.#strategy, m, { latencyMillis, ok });
    }
  }

  /** Takes a replica out of service until its next successful check (a read on it failed to connect). */
  markFailed(server: ServerSpec, problem: string): void {
    for (const list of this.#members.values()) {
      for (const m of list) {
        if (m.server.url !== server.url) continue;
        m.healthy = false;
        m.problem = problem;
        m.failedAt = performance.now();
      }
    }
  }

  /** Measures every replica now (concurrent callers share one round of checks). */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#checkAll().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /** The last measurements, per replica. */
  status(): ReplicaStatus[] {
    const out: ReplicaStatus[] = [];
    for (const list of this.#members.values()) {
      for (const m of list) {
        out.push(
          Object.freeze({
            shardId: m.shard.id,
            server: m.server.redactedUrl,
            healthy: m.healthy,
            lagBytes: m.lagBytes,
            replayedTo: m.replayedTo === null ? null : formatLsn(m.replayedTo),
            problem: m.problem,
            eligible: this.#eligible(m, undefined, performance.now()),
          }),
        );
      }
    }
    return out;
  }

  /** Stops the timer. */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #eligible(m: ReplicaMember, requiredPosition: bigint | undefined, now: number): boolean {
    if (!m.healthy || m.lagBytes === null || m.lagBytes > this.#options.maxLagBytes) return false;
    // With periodic checks, a measurement that stopped being renewed (checks hang or fail to run) expires.
    const { lagCheckIntervalMillis, checkTimeoutMillis } = this.#options;
    if (lagCheckIntervalMillis > 0 && now - m.checkedAt > 3 * lagCheckIntervalMillis + checkTimeoutMillis) return false;
    return requiredPosition === undefined || (m.replayedTo !== null && m.replayedTo >= requiredPosition);
  }

  async #checkAll(): Promise<void> {
    await Promise.all([...this.#members.values()].map((members) => this.#checkShard(members)));
  }

  async #checkShard(members: readonly ReplicaMember[]): Promise<void> {
    const shard = members[0]!.shard;
    const roundStart = performance.now();
    // Replicas first, then the primary: the primary can only have moved on meanwhile, so the lag
    // computed is an upper bound, never an underestimate.
    const replayed = await Promise.all(
      members.map(async (m) => {
        try {
          const [position, standby] = (await this.#scalar(m.server, "select coalesce(pg_last_wal_replay_lsn()::text, '') || ' ' || pg_is_in_recovery()::text as v")).split(' ');
          if (standby !== 'true' || position === undefined || position === '') return new Error('the server is not a streaming standby (promoted, or not a replica)');
          return parseLsn(position);
        } catch (error) {
          return error as Error;
        }
      }),
    );
    let primaryAt: bigint | Error;
    try {
      primaryAt = parseLsn(await this.#scalar(shard.primary, 'select pg_current_wal_insert_lsn()::text as v'));
    } catch (error) {
      primaryAt = error as Error;
    }
    const now = performance.now();
    members.forEach((m, i) => {
      const at = replayed[i]!;
      m.checkedAt = now;
      if (at instanceof Error || primaryAt instanceof Error) {
        m.healthy = false;
        m.problem = at instanceof Error ? at.message : `its primary could not be checked: ${(primaryAt as Error).message}`;
        return;
      }
      if (at > primaryAt) {
        m.healthy = false;
        m.problem = 'it has replayed past its primary’s position: it is not a replica of this primary';
        return;
      }
      if (m.failedAt > roundStart) return; // a read failed to reach it after this round began
      m.replayedTo = at;
      m.lagBytes = Number(primaryAt - at);
      m.healthy = true;
      m.problem = null;
    });
  }

  /** Runs a one-value query on `server`, failing after `checkTimeoutMillis` (a client that did not answer is closed, not reused). */
  #scalar(server: ServerSpec, sql: string): Promise<string> {
    const timeoutMillis = this.#options.checkTimeoutMillis;
    return new Promise<string>((resolve, reject) => {
      let client: PoolClientLike | undefined;
      let released = false;
      let timedOut = false;
      const release = (destroy: boolean): void => {
        if (client === undefined || released) return;
        released = true;
        client.release(destroy);
      };
      const timer = setTimeout(() => {
        timedOut = true;
        release(true);
        reject(new Error(`no answer within ${timeoutMillis} ms`));
      }, timeoutMillis);
      timer.unref();
      this.#pools.acquire(server).then(
        (acquired) => {
          client = acquired;
          if (timedOut) return release(true);
          acquired.query(sql).then(
            ({ rows }) => {
              if (timedOut) return;
              clearTimeout(timer);
              release(false);
              resolve(String((rows[0] as { v: unknown }).v));
            },
            (error: unknown) => {
              if (timedOut) return;
              clearTimeout(timer);
              release(true);
              reject(error as Error);
            },
          );
        },
        (error: unknown) => {
          if (timedOut) return;
          clearTimeout(timer);
          reject(error as Error);
        },
      );
    });
  }
}
