/**
 * The replicas of one shard and the watch on its primary: each server has its own check loop and
 * deadline; the set turns what checks find into states (with an event for every change), and
 * answers which replicas may take a read now. It lends its members to the balancer's strategy
 * through {@link CandidateSet} and ejects members through the balancer's {@link OutlierEjector}.
 */
import type { CandidateSet } from '../balancer/strategy-candidates';
import type { OutlierEjector } from '../balancer/outlier-ejection';
import type { Strategy } from '../balancer/balancer-strategy';
import type { ServerSpec, Shard } from '../cluster/topology';
import type { Clock } from '../kernel/clock';
import { ErrorCodes, type ErrorCode } from '../kernel/errors';
import { redactText } from '../kernel/redact';
import { formatLsn } from '../cluster/wal-position';
import { CheckLoop } from './check-loop';
import { lagProblem } from './lag-bounds';
import { PrimaryWatch } from './primary-watch';
import type { ReplicaEvents, ReplicaState, PrimaryState } from './replica-events';
import { replicaIdentitySql } from './replica-identity';
import { ReplicaMember } from './replica-member';
import { streamProofProblem } from './stream-proof';
import type { ResolvedReplicaReadOptions } from './replica-options';
import { checkServer, CheckTimeoutError, queryWithin, type CheckPools, type ServerFacts } from './server-check';

/** What every replica set of a router shares. */
export interface ReplicaSetContext {
  readonly options: ResolvedReplicaReadOptions;
  readonly clock: Clock;
  readonly pools: CheckPools;
  readonly events: ReplicaEvents;
  readonly strategy: Strategy;
  /** A new ejection bookkeeper (one per shard, kept across topology changes). */
  createEjector(): OutlierEjector;
  /** A standby of the set's shard was found promoted (writing on a newer timeline than the primary). */
  onPromoted(set: ReplicaSet, member: ReplicaMember): void;
}

/** A server that is down is checked this often (ms) at most, so it is back in use soon after it returns. */
const DOWN_CHECK_INTERVAL_MILLIS = 200;
/**
 * A primary is marked down by one refused connection, but only by this many checks in a row that
 * got no answer in time: a loaded primary that is slow to answer one check keeps taking writes.
 */
const PRIMARY_TIMEOUTS_TO_DOWN = 2;
/** Checks on demand (a replica whose estimated lag nears its bound) run at most this often per replica. */
const ON_DEMAND_MIN_GAP_MILLIS = 50;

const HEALTHY: ReadonlySet<ReplicaState> = new Set(['serving', 'lagging']);

/** One shard's replicas and primary. */
export class ReplicaSet implements CandidateSet<ReplicaMember> {
  readonly primary: PrimaryWatch;
  readonly ejector: OutlierEjector;
  #shard: Shard;
  #members: ReplicaMember[] = [];
  readonly #loops = new Map<ReplicaMember, CheckLoop>();
  readonly #primaryLoop: CheckLoop;
  readonly #context: ReplicaSetContext;
  readonly #onDemandAt = new Map<ReplicaMember, number>();
  #primaryTimeouts = 0;

  /**
   * @param previous the set of the same shard in the topology before: its primary's history, and
   *   its members' measurements, carry over.
   * @param promotedTimeline set when the shard's new primary is a standby found promoted (its
   *   identity and timeline then carry over; a newly published primary starts unknown).
   */
  constructor(shard: Shard, context: ReplicaSetContext, previous?: ReplicaSet, promotedTimeline?: number) {
    this.#context = context;
    this.#shard = shard;
    const { options } = context;
    this.primary = previous?.primary ?? new PrimaryWatch(shard.primary, options.maxLagMillis + 10 * Math.max(options.lagCheckIntervalMillis, 1000));
    this.ejector = previous?.ejector ?? context.createEjector();
    if (this.primary.server.url !== shard.primary.url) {
      this.primary.server = shard.primary;
      if (promotedTimeline === undefined) this.primary.identity = undefined;
      this.primary.timeline = promotedTimeline ?? null;
      this.primary.failedAt = -Infinity;
      this.#setPrimaryState(promotedTimeline === undefined ? 'unchecked' : 'up', promotedTimeline === undefined ? 'was published as the primary of the shard' : `is the shard's primary now (a promoted standby, timeline ${promotedTimeline})`);
    }
    this.adopt(shard, previous?.members ?? []);
    this.#primaryLoop = new CheckLoop(context.clock, () => this.#interval(this.primary.state !== 'up'), () => this.checkPrimary());
  }

  get shard(): Shard {
    return this.#shard;
  }

  get members(): readonly ReplicaMember[] {
    return this.#members;
  }

  /** Takes the shard's replicas from `shard`; members it still lists keep their measurements and loops. */
  adopt(shard: Shard, previous: readonly ReplicaMember[]): void {
    this.#shard = shard;
    const kept = new Map(previous.map((m) => [m.server.url, m]));
    this.#members = shard.replicas.map((server) => {
      const member = new ReplicaMember(shard, server, this.#context.pools.busy);
      const old = kept.get(server.url);
      if (old !== undefined) member.copyState(old);
      return member;
    });
  }

  /** Starts every server's check loop (nothing when checks are manual). */
  start(): void {
    this.#primaryLoop.start();
    for (const member of this.#members) this.#loopOf(member).start();
  }

  /** Stops every loop. */
  stop(): void {
    this.#primaryLoop.stop();
    for (const loop of this.#loops.values()) loop.stop();
  }

  /** Checks the primary, then every replica (each under its own deadline, in parallel). */
  async refresh(): Promise<void> {
    await this.#primaryLoop.now();
    await Promise.all(this.#members.map((m) => this.#loopOf(m).now()));
  }

  /** Checks `member` now (joins a running check). */
  checkNow(member: ReplicaMember): Promise<void> {
    return this.#loopOf(member).now();
  }

  /** Checks the primary now (joins a running check). */
  checkPrimaryNow(): Promise<void> {
    return this.#primaryLoop.now();
  }

  /**
   * Whether the primary answers a check that ends after this call (a running check is joined,
   * then a new one runs if that one got no answer): at most about two `checkTimeoutMillis`.
   */
  async primaryAnswersNow(): Promise<boolean> {
    const asked = this.#context.clock.monotonicNow();
    const watch = this.primary;
    await this.#primaryLoop.now();
    if (watch.lastSeenAt >= asked) return true;
    if (watch.state === 'down' || watch.state === 'demoted') return false;
    await this.#primaryLoop.now();
    return watch.lastSeenAt >= asked;
  }

  /** The members that may take a plain read now: see {@link readProblem}. */
  candidates(requiredPosition?: bigint, exclude?: ReadonlySet<string>): ReplicaMember[] {
    const now = this.#context.clock.monotonicNow();
    const out: ReplicaMember[] = [];
    for (const m of this.#members) {
      if (exclude?.has(m.server.url) === true) continue;
      if (this.readProblem(m, now, requiredPosition) === null) out.push(m);
    }
    return out;
  }

  /**
   * Why `member` may not take a read at `now`, or `null` when it may: it must be proven and healthy,
   * its last check recent, within both lag bounds (which may change its state, with an event), not
   * piling up unanswered reads, and (for read-your-writes) past `requiredPosition`.
   */
  readProblem(member: ReplicaMember, now: number, requiredPosition?: bigint): string | null {
    if (!HEALTHY.has(member.state) || member.replayedTo === null) return member.problem ?? member.state;
    const { lagCheckIntervalMillis, checkTimeoutMillis, maxUnansweredReads } = this.#context.options;
    // With periodic checks, a measurement that stopped being renewed (checks hang or fail to run) expires.
    if (lagCheckIntervalMillis > 0 && now - member.checkedAt > 3 * lagCheckIntervalMillis + checkTimeoutMillis) return 'its last check is too old';
    const lag = this.#lagState(member, now);
    if (lag !== null) return lag;
    if (member.unansweredReads(now) >= maxUnansweredReads) return `${maxUnansweredReads} reads on it are waiting for an answer`;
    if (requiredPosition !== undefined && member.replayedTo < requiredPosition) return 'it has not replayed the required position';
    return null;
  }

  /** Takes `member` out of rotation at once (a read on it failed to connect or passed its deadline). */
  eject(member: ReplicaMember, reason: string): void {
    const now = this.#context.clock.monotonicNow();
    member.failedAt = now;
    this.ejector.record(member.id, false, now, Math.max(1, this.#members.length));
    this.#setState(member, 'ejected', reason);
  }

  /** The primary could not be reached: it is down until a check that began after this succeeds. */
  primaryFailed(reason: string): void {
    this.primary.failedAt = this.#context.clock.monotonicNow();
    this.#setPrimaryState('down', reason);
    void this.#primaryLoop.now();
  }

  /** A fresh look at `member`'s replay position (it only moves forward). */
  noteReplayed(member: ReplicaMember, lsn: bigint): void {
    if (member.replayedTo === null || lsn > member.replayedTo) member.replayedTo = lsn;
  }

  async checkPrimary(): Promise<void> {
    const { clock, pools, options } = this.#context;
    const watch = this.primary;
    const server = watch.server;
    const started = clock.monotonicNow();
    let facts: ServerFacts;
    let identityProblem = '';
    // The position read holds at least from when the check was sent: observations are dated then,
    // so "the primary had at most this at that time" stays true however long the answer took.
    let sentAt = started;
    try {
      facts = await checkServer(pools, clock, server, options.checkTimeoutMillis);
      if (!facts.standby && facts.identity === undefined) {
        // First check of this primary's database: write its identity once, for its standbys to replay.
        try {
          await queryWithin(pools, clock, server, replicaIdentitySql(this.#shard.id), options.checkTimeoutMillis);
        } catch (error) {
          identityProblem = `: its identity could not be written (${this.#redact(error, server)}), so no replica can be proven`;
        }
        sentAt = clock.monotonicNow();
        facts = await checkServer(pools, clock, server, options.checkTimeoutMillis);
      }
    } catch (error) {
      if (watch.server !== server) return;
      // Up or not checked yet: one check without an answer is not enough (a refused connection is).
      if (error instanceof CheckTimeoutError && ++this.#primaryTimeouts < PRIMARY_TIMEOUTS_TO_DOWN && (watch.state === 'up' || watch.state === 'unchecked')) return;
      this.#setPrimaryState('down', `does not answer: ${this.#redact(error, server)}`);
      return;
    }
    this.#primaryTimeouts = 0;
    if (watch.server !== server) return; // the primary changed while this check ran
    if (facts.standby) return this.#setPrimaryState('demoted', 'is in recovery (a standby), not a primary: it takes no writes');
    if (watch.timeline !== null && facts.timeline !== null && facts.timeline < watch.timeline) {
      return this.#setPrimaryState('demoted', `writes on timeline ${facts.timeline}, older than the shard's timeline ${watch.timeline}: a standby was promoted in its place`);
    }
    if (watch.failedAt > started) return; // a connection failed after this check began
    let identity = facts.identity;
    if (identity !== undefined && identity.shardId !== this.#shard.id) {
      // A copy of another shard's database (a split by promotion, a restored backup) keeps that
      // shard's identity, and that shard's standbys would replay the same token: trust none.
      identityProblem = `: its data carries the identity of shard "${identity.shardId}" (a copy of that shard, or a renamed shard), so no replica can be proven; if this database is shard "${this.#shard.id}"'s own, delete the row of kysely_scale.replica_identity on it and a new identity is written at the next check`;
      identity = undefined;
    }
    watch.identity = identity;
    watch.timeline = facts.timeline;
    if (facts.lsn !== null) watch.observe(facts.lsn, sentAt);
    watch.lastSeenAt = clock.monotonicNow();
    this.#setPrimaryState('up', `answers as a primary${identityProblem}`);
  }

  async checkReplica(member: ReplicaMember): Promise<void> {
    const { clock, pools, options } = this.#context;
    const started = clock.monotonicNow();
    let facts: ServerFacts;
    try {
      facts = await checkServer(pools, clock, member.server, options.checkTimeoutMillis);
    } catch (error) {
      member.checkedAt = clock.monotonicNow();
      if (member.state === 'ejected' && member.failedAt > started) return;
      this.#setState(member, 'unreachable', `does not answer: ${this.#redact(error, member.server)}`);
      return;
    }
    const now = clock.monotonicNow();
    member.checkedAt = now;
    const watch = this.primary;
    const ours = watch.identity;
    const theirs = facts.identity;
    if (!facts.standby) {
      if (ours !== undefined && theirs?.token === ours.token && facts.timeline !== null && (watch.timeline === null || facts.timeline > watch.timeline)) {
        // Two primaries with the shard's data: follow the newer one only once the listed primary is
        // out (down, or found a standby). While it answers as a primary, this is a copy (a restored
        // backup, a promotion for a drill) or a promotion not finished: writes stay where they are.
        if (watch.state !== 'down' && watch.state !== 'demoted') {
          return this.#refuse(member, `is a primary with the shard's identity on timeline ${facts.timeline}, while the shard's primary ${watch.server.redactedUrl} answers as a primary: a copy of the shard or a promotion outside a failover; it takes no reads, and writes stay on the primary`);
        }
        member.timeline = facts.timeline;
        this.#setState(member, 'promoted', `was promoted: it writes on timeline ${facts.timeline} with the shard's identity; writes follow it`);
        this.#context.onPromoted(this, member);
        return;
      }
      return this.#refuse(member, 'is not a standby (not in recovery): a primary, or a standby promoted outside this shard');
    }
    if (facts.lsn === null) return this.#setState(member, 'unverified', 'has not replayed any WAL yet');
    if (ours === undefined) return this.#setState(member, 'unverified', "its primary's identity is not known or not trusted yet (the primary's state says why)");
    if (theirs === undefined) return this.#setState(member, 'unverified', "has not replayed its primary's identity (kysely_scale.replica_identity) yet");
    if (theirs.token !== ours.token) {
      const other = theirs.shardId === this.#shard.id ? `another primary's (written as shard "${theirs.shardId}" on another server or database)` : `the identity of shard "${theirs.shardId}"`;
      return this.#refuse(member, `streams from another primary: it replays ${other}, not that of shard "${this.#shard.id}"'s primary ${watch.server.redactedUrl}`);
    }
    const streamProblem = streamProofProblem(member, facts, this.primary.timeline, this.primary.server.redactedUrl);
    if (streamProblem !== null) return streamProblem.refuse ? this.#refuse(member, streamProblem.text) : this.#setState(member, 'unverified', streamProblem.text);
    if (member.failedAt > started) return; // a read failed on it after this check began: it stays out
    const ahead = await this.#aheadOfPrimary(facts.lsn, now);
    if (watch.server.url !== this.#shard.primary.url) return; // the primary changed meanwhile: the next check decides
    if (ahead !== null) return this.#refuse(member, ahead);
    if (member.failedAt > started) return;
    if (member.state === 'ejected' && this.ejector.isEjected(member.id)) {
      if (!this.ejector.release(now).includes(member.id)) return; // a repeated ejection lasts longer than one check
    }
    member.replayedTo = facts.lsn;
    member.replayTimestampMillis = facts.replayTimestampMillis;
    const latest = watch.latest;
    member.lagBytes = latest === undefined ? null : Math.max(0, Number(latest.lsn - facts.lsn));
    const wasOut = !HEALTHY.has(member.state);
    const problem = this.#lagProblemOf(member, now);
    this.#setState(member, problem === null ? 'serving' : 'lagging', problem ?? 'proven to stream from its primary, within the lag bounds');
    if (wasOut) this.#context.strategy.onReturn?.(member.id);
  }

  /**
   * Refusal when a standby replayed past its primary: the primary's position is read again after the
   * standby's answer (`answeredAt`), and a standby past it holds WAL this primary never had (a
   * branch of a dead primary, or a copy's). `null` when it is not past, or the primary cannot be read.
   */
  async #aheadOfPrimary(replayed: bigint, answeredAt: number): Promise<string | null> {
    const watch = this.primary;
    if (watch.latest === undefined || replayed <= watch.latest.lsn) return null;
    // The primary may only have moved on since it was seen: look at it after the standby answered.
    await this.#primaryLoop.now();
    if ((watch.latest?.at ?? -Infinity) < answeredAt) await this.#primaryLoop.now();
    const fresh = watch.latest;
    if (watch.state !== 'up' || fresh === undefined || fresh.at < answeredAt || replayed <= fresh.lsn) return null;
    return `replayed to ${formatLsn(replayed)}, past its primary ${watch.server.redactedUrl} at ${formatLsn(fresh.lsn)} read after it: it holds WAL that primary never had (a branch of a former primary, or a copy of the shard)`;
  }

  /** Lag bounds at `now`, moving the member between serving and lagging; asks for a check when its estimate nears a bound. */
  #lagState(member: ReplicaMember, now: number): string | null {
    const problem = this.#lagProblemOf(member, now);
    const to: ReplicaState = problem === null ? 'serving' : 'lagging';
    if (member.state !== to) this.#setState(member, to, problem ?? 'back within the lag bounds');
    else if (problem !== null) member.problem = problem;
    if (problem === null && this.#context.options.lagCheckIntervalMillis > 0) this.#checkIfNearBound(member, now);
    return problem;
  }

  #lagProblemOf(member: ReplicaMember, now: number): string | null {
    return lagProblem(member.replayedTo!, this.primary, this.primary.state === 'up', now, this.#context.options);
  }

  /** On-demand checks of the replica and the primary once the estimate passes half a bound: the estimate then rests on fresh numbers. */
  #checkIfNearBound(member: ReplicaMember, now: number): void {
    const { maxLagBytes, maxLagMillis } = this.#context.options;
    const half = lagProblem(member.replayedTo!, this.primary, this.primary.state === 'up', now, { maxLagBytes: maxLagBytes / 2, maxLagMillis: maxLagMillis / 2 });
    if (half === null) return;
    const last = this.#onDemandAt.get(member) ?? -Infinity;
    if (now - last < ON_DEMAND_MIN_GAP_MILLIS) return;
    this.#onDemandAt.set(member, now);
    void this.#primaryLoop.now().then(() => this.#loopOf(member).now());
  }

  #refuse(member: ReplicaMember, problem: string): void {
    this.#setState(member, 'refused', problem, ErrorCodes.REPLICA_REFUSED);
  }

  #setState(member: ReplicaMember, to: ReplicaState, reason: string, code?: ErrorCode): void {
    const from = member.state;
    const problem = to === 'serving' ? null : `Replica ${member.server.redactedUrl} of shard "${this.#shard.id}" ${reason}`;
    member.state = to;
    member.problem = problem;
    member.code = code;
    if (from === to) return;
    this.#context.events.emit({ role: 'replica', shardId: this.#shard.id, server: member.server.redactedUrl, from, to, reason: problem ?? `Replica ${member.server.redactedUrl} of shard "${this.#shard.id}" ${reason}`, ...(code === undefined ? {} : { code }) });
  }

  #setPrimaryState(to: PrimaryState, reason: string): void {
    const watch = this.primary;
    const from = watch.state;
    const text = `Primary ${watch.server.redactedUrl} of shard "${this.#shard.id}" ${reason}`;
    watch.state = to;
    watch.problem = to === 'up' ? null : text;
    if (from === to) return;
    this.#context.events.emit({ role: 'primary', shardId: this.#shard.id, server: watch.server.redactedUrl, from, to, reason: text });
  }

  #loopOf(member: ReplicaMember): CheckLoop {
    let loop = this.#loops.get(member);
    if (loop === undefined) {
      loop = new CheckLoop(this.#context.clock, () => this.#interval(!HEALTHY.has(member.state)), () => this.checkReplica(member));
      this.#loops.set(member, loop);
    }
    return loop;
  }

  #interval(down: boolean): number {
    const interval = this.#context.options.lagCheckIntervalMillis;
    return down && interval > 0 ? Math.min(interval, DOWN_CHECK_INTERVAL_MILLIS) : interval;
  }

  #redact(error: unknown, server: ServerSpec): string {
    return redactText(String((error as { message?: unknown })?.message ?? error), [server.url]);
  }
}
