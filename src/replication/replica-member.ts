/**
 * One replica of a shard as its replica set keeps it: a real {@link BalancedInstance} for the
 * balancer's strategies (its in-flight count is its pool's busy connections; its latency and the
 * age of its oldest unanswered read come from the reads it served), plus what its checks measured
 * and its state.
 */
import type { BalancedInstance, InstanceMetadata } from '../balancer/balancer-instance';
import type { ServerSpec, Shard } from '../cluster/topology';
import type { ErrorCode } from '../kernel/errors';
import type { ReplicaState } from './replica-events';

/** Smoothing of the latency average (weight of the newest read). */
const LATENCY_ALPHA = 0.2;
const NO_METADATA: InstanceMetadata = Object.freeze({});

/** A read on a member, from its start to its end. */
export interface ReadTicket {
  readonly startedAt: number;
}

/** A replica of a shard. */
export class ReplicaMember implements BalancedInstance {
  readonly id: string;
  readonly address: string;
  readonly weight = 1;
  readonly effectiveWeight = 1;
  readonly metadata = NO_METADATA;
  latencyEwmaMillis: number | undefined = undefined;

  state: ReplicaState = 'unchecked';
  problem: string | null = 'not checked yet';
  /** The stable code of the problem, for refusals. */
  code: ErrorCode | undefined;
  /** The position it had replayed at least to (its last check, or an on-demand look). */
  replayedTo: bigint | null = null;
  /** WAL bytes behind its primary's last known position at its last check. */
  lagBytes: number | null = null;
  /** Commit time (primary's wall ms) of the last transaction it had replayed at its last check. */
  replayTimestampMillis: number | null = null;
  /** The timeline it writes on, when its check found it promoted. */
  timeline: number | null = null;
  /**
   * The shard timeline it was last seen streaming on (a WAL receiver on its primary's timeline);
   * without a receiver it stays proven only while the shard's timeline is still this one.
   */
  streamedTimeline: number | null = null;
  /** When its last check finished (monotonic ms). */
  checkedAt = -Infinity;
  /** When a read on it last failed: a check that began before cannot bring it back. */
  failedAt = -Infinity;

  readonly #reads = new Set<ReadTicket>();
  readonly #busy: (server: ServerSpec) => number;
  /** When it last answered a read (monotonic ms). */
  #answeredAt = -Infinity;

  constructor(
    readonly shard: Shard,
    readonly server: ServerSpec,
    busy: (server: ServerSpec) => number,
  ) {
    this.id = server.redactedUrl;
    this.address = server.redactedUrl;
    this.#busy = busy;
  }

  /** Connections of its pool in use or waited for. */
  get inflight(): number {
    return this.#busy(this.server);
  }

  /** Age of its oldest read in flight at the time of the last `unansweredReads` call (0 when none). */
  oldestInflightAgeMillis = 0;

  /** Takes over what `other` measured (the same server in a new topology). */
  copyState(other: ReplicaMember): void {
    this.state = other.state;
    this.problem = other.problem;
    this.code = other.code;
    this.replayedTo = other.replayedTo;
    this.lagBytes = other.lagBytes;
    this.replayTimestampMillis = other.replayTimestampMillis;
    this.timeline = other.timeline;
    this.streamedTimeline = other.streamedTimeline;
    this.checkedAt = other.checkedAt;
    this.failedAt = other.failedAt;
    this.latencyEwmaMillis = other.latencyEwmaMillis;
  }

  /** A read starts on it. */
  startRead(now: number): ReadTicket {
    const ticket = { startedAt: now };
    this.#reads.add(ticket);
    return ticket;
  }

  /** A read ends; `answered` when the server answered it (rows or a statement error), not when it failed to connect or passed its deadline. */
  endRead(ticket: ReadTicket, now: number, answered: boolean): void {
    if (!this.#reads.delete(ticket)) return;
    if (!answered) return;
    this.#answeredAt = Math.max(this.#answeredAt, now);
    const latency = now - ticket.startedAt;
    this.latencyEwmaMillis = this.latencyEwmaMillis === undefined ? latency : this.latencyEwmaMillis + LATENCY_ALPHA * (latency - this.latencyEwmaMillis);
  }

  /** When it last answered a read (monotonic ms; -Infinity before its first answer). */
  get answeredAt(): number {
    return this.#answeredAt;
  }

  /** Its reads in flight that started after its last answer (a server that stopped answering piles them up). */
  unansweredReads(now: number): number {
    let count = 0;
    let oldest = now;
    for (const ticket of this.#reads) {
      oldest = Math.min(oldest, ticket.startedAt);
      if (ticket.startedAt >= this.#answeredAt) count++;
    }
    this.oldestInflightAgeMillis = now - oldest;
    return count;
  }

  /** Forgets the reads in flight (they were abandoned: it left rotation). */
  abandonReads(): void {
    this.#reads.clear();
  }
}
