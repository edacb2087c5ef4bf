/**
 * The replica router: the one object the dialect's runtime holds for replication. It keeps a
 * {@link ReplicaSet} per shard (its replicas, the watch on its primary, a check loop per server),
 * answers where a plain read may go, takes replicas out of rotation when reads fail, waits for
 * replay on demand, refuses a primary that is down or demoted, and follows a promoted standby.
 *
 * The pieces, one concept each: replica-options (options and validation), check-loop and
 * server-check (one loop and one deadline per server), replica-identity (proof that a standby
 * streams from this shard's primary), lag-bounds (bounds that hold between checks), replica-set
 * (states and read choice through the balancer's strategy and ejection), replica-failover (what a
 * failed read means), replay-wait (read-your-writes on demand), replica-events (every state change).
 */
import { OutlierEjector } from '../balancer/outlier-ejection';
import type { Strategy } from '../balancer/balancer-strategy';
import { pickCandidate } from '../balancer/strategy-candidates';
import { leastConnections } from '../balancer/strategies/least-connections';
import { isConnectionFailure, isPoolTimeout } from '../cluster/connection-failure';
import { ServerPools, type PoolLike } from '../cluster/server-pools';
import { createTopology, type ServerSpec, type Shard, type Topology } from '../cluster/topology';
import { formatLsn } from '../cluster/wal-position';
import { systemClock, type Clock } from '../kernel/clock';
import type { ErrorCode } from '../kernel/errors';
import { redactText } from '../kernel/redact';
import { RATE_MARGIN, stalenessBoundMillis } from './lag-bounds';
import { answered, ejects, type ReadOutcome } from './replica-failover';
import { ReplicaEvents, type ReplicaEventListener, type ReplicaState } from './replica-events';
import type { ReplicaMember } from './replica-member';
import type { ResolvedReplicaReadOptions } from './replica-options';
import { ReplicaSet, type ReplicaSetContext } from './replica-set';
import { PrimaryUnavailableError } from './replication-errors';
import { ReplayWaiter } from './replay-wait';
import type { CheckPools } from './server-check';

export { REPLICA_READ_DEFAULTS, resolveReplicaReadOptions, type ReplicaReadOptions, type ResolvedReplicaReadOptions } from './replica-options';

/** What the router last measured of one replica. */
export interface ReplicaStatus {
  readonly shardId: string;
  /** The replica's URL with its password redacted. */
  readonly server: string;
  /** Its state (see {@link ReplicaState}). */
  readonly state: ReplicaState;
  /** Whether it is proven, answers and is a standby (`serving` or `lagging`). */
  readonly healthy: boolean;
  /** WAL bytes it was behind its primary's last known position at its last check; `null` before. */
  readonly lagBytes: number | null;
  /** Upper bound (ms) of how old its data is now; `null` when nothing proves one. */
  readonly lagMillis: number | null;
  /** The position it had replayed to (`pg_lsn` text); `null` before its first check. */
  readonly replayedTo: string | null;
  /** Why it does not serve reads, naming the shard and the server; `null` when it serves. */
  readonly problem: string | null;
  /** The stable code of a refusal (`E_REPLICA_REFUSED`). */
  readonly code: ErrorCode | null;
  /** Whether it would take a plain read now. */
  readonly eligible: boolean;
}

/** A read running on a replica: end it once, with its outcome. */
export interface ReplicaRead {
  end(outcome: ReadOutcome): void;
}

/** How the router reaches servers. */
export interface ReplicaRouterServers {
  /** Builds the pool a server's checks use: kept apart from the read pools, so a check never queues behind reads. */
  createPool(server: ServerSpec): PoolLike;
  /** Connections of `server`'s read pool in use or waited for (least-connections reads it). */
  busy(server: ServerSpec): number;
}

/** What the router tells its owner. */
export interface ReplicaRouterHooks {
  /** A standby was found promoted: the topology to route by now has it as its shard's primary. */
  onTopologyChange?(effective: Topology): void;
}

interface Promotion {
  readonly from: string;
  readonly to: string;
  readonly timeline: number;
}

const NO_READ: ReplicaRead = Object.freeze({ end: () => undefined });

/** Routes plain reads to replicas and watches every shard's primary; see the file's opening comment. */
export class ReplicaRouter {
  readonly options: ResolvedReplicaReadOptions;
  readonly #clock: Clock;
  readonly #pools: CheckPools;
  readonly #checkPools: ServerPools;
  readonly #strategy: Strategy;
  readonly #events = new ReplicaEvents();
  readonly #hooks: ReplicaRouterHooks;
  readonly #context: ReplicaSetContext;
  #sets = new Map<string, ReplicaSet>();
  #byPrimary = new Map<string, ReplicaSet>();
  #published: Topology;
  #effective: Topology;
  readonly #promotions = new Map<string, Promotion>();
  /** Old primaries a promoted standby replaced (URL → refusal text): never written to again. */
  readonly #demoted = new Map<string, { shardId: string; reason: string }>();
  readonly #waiters = new WeakMap<ReplicaMember, ReplayWaiter>();
  #closed = false;

  constructor(options: ResolvedReplicaReadOptions, topology: Topology, servers: ReplicaRouterServers, clock: Clock = systemClock, hooks: ReplicaRouterHooks = {}) {
    this.options = options;
    this.#clock = clock;
    // Errors of idle check connections are expected when a server goes away; the next check reports it.
    this.#checkPools = new ServerPools(servers.createPool, () => undefined);
    const pools: CheckPools = {
      acquire: (server) => (this.#closed ? Promise.reject(new Error('the replica router is closed')) : this.#checkPools.acquire(server)),
      busy: (server) => servers.busy(server),
    };
    this.#pools = pools;
    this.#strategy = options.strategy ?? leastConnections();
    this.#hooks = hooks;
    const base = Math.max(1, options.lagCheckIntervalMillis);
    this.#context = {
      options,
      clock,
      pools,
      events: this.#events,
      strategy: this.#strategy,
      // A first ejection lasts one check interval; repeated ones longer (n intervals, at most 30 s), so a flapping replica stays out.
      createEjector: () => new OutlierEjector({ consecutiveFailures: 1, maxEjectedPercent: 100, baseEjectionTimeMillis: base, maxEjectionTimeMillis: Math.max(30_000, base) }),
      onPromoted: (set, member) => this.#promote(set, member),
    };
    this.#published = topology;
    this.#effective = topology;
    this.setTopology(topology);
  }

  /** The topology to route by: the published one, with promoted standbys in place of the primaries they replaced. */
  get topology(): Topology {
    return this.#effective;
  }

  /** Follows a newly published topology; replicas it still lists keep their measurements. Returns the topology to route by. */
  setTopology(published: Topology): Topology {
    this.#published = published;
    const effective = this.#applyPromotions(published);
    const next = new Map<string, ReplicaSet>();
    const byPrimary = new Map<string, ReplicaSet>();
    for (const shard of effective.shards) {
      if (shard.replicas.length === 0 && !this.#promotions.has(shard.id)) continue;
      const previous = this.#sets.get(shard.id);
      const promotion = this.#promotions.get(shard.id);
      const set = new ReplicaSet(shard, this.#context, previous, promotion?.to === shard.primary.url ? promotion.timeline : undefined);
      next.set(shard.id, set);
      byPrimary.set(shard.primary.url, set);
    }
    const kept = new Set<string>();
    for (const set of next.values()) for (const m of set.members) kept.add(m.id);
    for (const set of this.#sets.values()) {
      set.stop();
      for (const m of set.members) if (!kept.has(m.id)) this.#strategy.onRemove?.(m.id);
    }
    this.#sets = next;
    this.#byPrimary = byPrimary;
    this.#effective = effective;
    const urls = new Set<string>();
    for (const shard of effective.shards) for (const server of [shard.primary, ...shard.replicas]) urls.add(server.url);
    this.#checkPools.retainOnly(urls);
    if (!this.#closed) for (const set of next.values()) set.start();
    return effective;
  }

  /** The replica a plain read on `shard` should use (one that replayed `requiredPosition`, when given), or `undefined` for the primary. */
  serverForRead(shard: Shard, requiredPosition?: bigint, exclude?: ReadonlySet<string>): ServerSpec | undefined {
    const set = this.#sets.get(shard.id);
    if (set === undefined) return undefined;
    return pickCandidate(this.#strategy, set.candidates(requiredPosition, exclude))?.server;
  }

  /** Starts a read on `server` of `shard`: its progress and outcome count for the replica and its strategy. */
  startRead(shard: Shard, server: ServerSpec): ReplicaRead {
    const set = this.#sets.get(shard.id);
    const member = set?.members.find((m) => m.server.url === server.url);
    if (set === undefined || member === undefined) return NO_READ;
    const ticket = member.startRead(this.#clock.monotonicNow());
    return {
      end: (outcome) => {
        const now = this.#clock.monotonicNow();
        member.endRead(ticket, now, answered(outcome));
        this.#strategy.onComplete?.(member, { latencyMillis: now - ticket.startedAt, ok: !ejects(outcome), ...(outcome === 'deadline' ? { timeoutMillis: this.options.readTimeoutMillis } : {}) });
      },
    };
  }

  /** Whether a checkout of `server`'s pool begun at `since` and still waiting is the pool's fault: the replica answered a read, or passed a check (on its own pool), since. */
  poolContended(shard: Shard, server: ServerSpec, since: number): boolean {
    const member = this.#sets.get(shard.id)?.members.find((m) => m.server.url === server.url);
    if (member === undefined) return false;
    return member.answeredAt >= since || ((member.state === 'serving' || member.state === 'lagging') && member.checkedAt >= since);
  }

  /** Takes `server` of `shard` out of read service at once (a read on it failed to connect or passed its deadline). */
  markFailed(shard: Shard, server: ServerSpec, problem: string): void {
    const set = this.#sets.get(shard.id);
    const member = set?.members.find((m) => m.server.url === server.url);
    if (set === undefined || member === undefined) return;
    set.eject(member, redactText(problem, [server.url]));
  }

  /**
   * Waits up to `waitMillis` for a replica of `shard` that is otherwise eligible to replay
   * `position` (asking it on demand); the replica, or `undefined` when none did in time.
   */
  async waitForReplay(shard: Shard, position: bigint, waitMillis: number, exclude?: ReadonlySet<string>): Promise<ServerSpec | undefined> {
    const set = this.#sets.get(shard.id);
    if (set === undefined) return undefined;
    const candidates = set.candidates(undefined, exclude);
    if (candidates.length === 0) return undefined;
    // The replica closest to the position replays it first.
    const closest = candidates.reduce((a, b) => ((b.replayedTo ?? 0n) > (a.replayedTo ?? 0n) ? b : a));
    let waiter = this.#waiters.get(closest);
    if (waiter === undefined) {
      waiter = new ReplayWaiter(closest, this.#pools, this.#clock, this.options.checkTimeoutMillis, (lsn) => set.noteReplayed(closest, lsn));
      this.#waiters.set(closest, waiter);
    }
    return (await waiter.wait(position, waitMillis)) ? closest.server : undefined;
  }

  /** A fresh look at a replica's replay position (after a read in a context that keeps reads monotonic). */
  noteReplayed(shard: Shard, server: ServerSpec, lsn: bigint): void {
    const set = this.#sets.get(shard.id);
    const member = set?.members.find((m) => m.server.url === server.url);
    if (set !== undefined && member !== undefined) set.noteReplayed(member, lsn);
  }

  /** An upper bound of `shard`'s primary's WAL position now (its last position plus what it can have written since); `undefined` when never seen. */
  primaryPositionBound(shard: Shard): bigint | undefined {
    const watch = this.#sets.get(shard.id)?.primary;
    const latest = watch?.latest;
    if (watch === undefined || latest === undefined) return undefined;
    const now = this.#clock.monotonicNow();
    const growth = watch.state === 'up' ? Math.ceil(RATE_MARGIN * watch.peakRate(now) * Math.max(0, now - latest.at)) : 0;
    return latest.lsn + BigInt(growth);
  }

  /** Whether `shard`'s primary may take statements (not known down or demoted). */
  primaryAvailable(shard: Shard): boolean {
    return this.refusal(shard.primary) === undefined;
  }

  /** The error a statement for `server` fails with at once: a primary known down (with periodic checks) or demoted; `undefined` otherwise. */
  refusal(server: ServerSpec): PrimaryUnavailableError | undefined {
    const demoted = this.#demoted.get(server.url);
    if (demoted !== undefined) return new PrimaryUnavailableError(demoted.reason, { shardId: demoted.shardId, server: server.redactedUrl, reason: 'demoted' });
    const set = this.#byPrimary.get(server.url);
    if (set === undefined) return undefined;
    const state = set.primary.state;
    if (state === 'demoted' || (state === 'down' && this.options.lagCheckIntervalMillis > 0)) {
      return new PrimaryUnavailableError(`${set.primary.problem ?? `The primary of shard "${set.shard.id}" is ${state}`}. The statement was not sent; retry once it is back.`, {
        shardId: set.shard.id,
        server: server.redactedUrl,
        reason: state,
      });
    }
    return undefined;
  }

  /**
   * The error to report when checking out a client of `server` failed: for a primary that cannot be
   * reached, a {@link PrimaryUnavailableError} naming the shard (the primary is then down until a
   * check succeeds); anything else unchanged.
   */
  acquireFailed(server: ServerSpec, error: unknown): unknown {
    const set = this.#byPrimary.get(server.url);
    if (set === undefined || !isConnectionFailure(error) || isPoolTimeout(error)) return error;
    const message = redactText(String((error as { message?: unknown })?.message ?? error), [server.url]);
    set.primaryFailed(`does not answer: ${message}`);
    return new PrimaryUnavailableError(`The primary ${server.redactedUrl} of shard "${set.shard.id}" does not answer: ${message}`, { shardId: set.shard.id, server: server.redactedUrl, reason: 'down' }, error);
  }

  /**
   * One client of `shard`'s primary broke in the middle of a statement (its backend was terminated,
   * its socket reset): the primary is checked now, and marked down only if the check fails as the
   * README says (a refused connection, or two checks without an answer). One broken client does not
   * refuse the shard's writes.
   */
  primaryClientLost(shard: Shard): void {
    void this.#sets.get(shard.id)?.checkPrimaryNow();
  }

  /** Whether `shard`'s primary answers a check that ends after this call (see {@link ReplicaSet.primaryAnswersNow}); true when it is not watched. */
  primaryAnswers(shard: Shard): Promise<boolean> {
    return this.#sets.get(shard.id)?.primaryAnswersNow() ?? Promise.resolve(true);
  }

  /** Checks every primary, then every replica, now (each server under its own deadline). */
  async refresh(): Promise<void> {
    await Promise.all([...this.#sets.values()].map((set) => set.refresh()));
  }

  /** The last measurements, per replica. */
  status(): ReplicaStatus[] {
    const out: ReplicaStatus[] = [];
    const now = this.#clock.monotonicNow();
    for (const set of this.#sets.values()) {
      for (const m of set.members) {
        const eligible = set.readProblem(m, now) === null;
        const staleness = m.replayedTo === null ? undefined : stalenessBoundMillis(m.replayedTo, set.primary, now);
        out.push(
          Object.freeze({
            shardId: set.shard.id,
            server: m.server.redactedUrl,
            state: m.state,
            healthy: m.state === 'serving' || m.state === 'lagging',
            lagBytes: m.lagBytes,
            lagMillis: staleness === undefined ? null : Math.round(staleness),
            replayedTo: m.replayedTo === null ? null : formatLsn(m.replayedTo),
            problem: m.problem,
            code: m.code ?? null,
            eligible,
          }),
        );
      }
    }
    return out;
  }

  /** Subscribes to replica and primary state changes; returns the unsubscribe function. */
  onEvent(listener: ReplicaEventListener): () => void {
    return this.#events.subscribe(listener);
  }

  /** Stops every check loop and ends the checks' pools. */
  close(): Promise<void> {
    this.#closed = true;
    for (const set of this.#sets.values()) set.stop();
    return this.#checkPools.destroy();
  }

  #promote(set: ReplicaSet, member: ReplicaMember): void {
    const shardId = set.shard.id;
    const from = set.shard.primary;
    if (member.timeline === null || this.#promotions.get(shardId)?.to === member.server.url) return;
    this.#promotions.set(shardId, { from: from.url, to: member.server.url, timeline: member.timeline });
    this.#demoted.set(from.url, {
      shardId,
      reason: `The former primary ${from.redactedUrl} of shard "${shardId}" was replaced by the promoted standby ${member.server.redactedUrl} (timeline ${member.timeline}): it is never written to again. The statement was not sent.`,
    });
    const effective = this.setTopology(this.#published);
    this.#hooks.onTopologyChange?.(effective);
  }

  #applyPromotions(published: Topology): Topology {
    if (this.#promotions.size === 0) return published;
    let changed = false;
    const shards = published.shards.map((shard) => {
      const promotion = this.#promotions.get(shard.id);
      const input = { id: shard.id, primary: shard.primary.url, replicas: shard.replicas.map((r) => r.url) };
      if (promotion === undefined) return input;
      // A publication naming another primary is the operator's word: the promotion is forgotten (its old primary stays refused).
      if (shard.primary.url !== promotion.from) {
        this.#promotions.delete(shard.id);
        return input;
      }
      changed = true;
      return { id: shard.id, primary: promotion.to, replicas: input.replicas.filter((url) => url !== promotion.to) };
    });
    return changed
      ? createTopology({ shards, slotCount: published.slotCount, owners: published.ownerIds(), version: published.version, unshardedShardId: published.unshardedShardId })
      : published;
  }
}
