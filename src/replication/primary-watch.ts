/**
 * What the checks know of one shard's primary: its state, identity and timeline, and a short
 * history of its WAL positions with the (monotonic) times they were seen. The history is what lag
 * bounds stand on: a replica that replayed a position the primary was seen at time T holds
 * everything the primary had at T; and the recent WAL rate bounds how far the primary can have
 * moved since its last check. The history belongs to the shard, not to a server, so it carries
 * over when a promoted standby (or a newly published primary) takes over: WAL positions continue.
 */
import type { ServerSpec } from '../cluster/topology';
import type { ReplicaIdentity } from './replica-identity';
import type { PrimaryState } from './replica-events';

/** The primary was seen at `lsn` at monotonic time `at`. */
export interface Observation {
  readonly lsn: bigint;
  readonly at: number;
}

/** At most this many positions are kept (older ones first to go). */
const MAX_OBSERVATIONS = 1024;
/** The WAL rate is the highest seen over this window. */
const RATE_WINDOW_MILLIS = 10_000;

/** The primary of one shard as its checks see it. */
export class PrimaryWatch {
  server: ServerSpec;
  state: PrimaryState = 'unchecked';
  problem: string | null = 'not checked yet';
  identity: ReplicaIdentity | undefined;
  /** The timeline it writes on, when known. */
  timeline: number | null = null;
  /** When it last answered a check as a primary (monotonic ms). */
  lastSeenAt = -Infinity;
  /** When a connection to it last failed: a check that began before cannot mark it up again. */
  failedAt = -Infinity;
  readonly #observations: Observation[] = [];
  readonly #keepMillis: number;

  /** @param keepMillis how long positions are kept (at least the time lag bound). */
  constructor(server: ServerSpec, keepMillis: number) {
    this.server = server;
    this.#keepMillis = keepMillis;
  }

  /** Records that the primary was at `lsn` at `at`. */
  observe(lsn: bigint, at: number): void {
    // Positions past this one were on a branch of history the new primary never had (WAL a dead
    // primary wrote that its promoted standby did not receive): they prove nothing any more.
    while (this.#observations.length > 0 && this.#observations[this.#observations.length - 1]!.lsn > lsn) this.#observations.pop();
    this.#observations.push(Object.freeze({ lsn, at }));
    const oldest = at - this.#keepMillis;
    while (this.#observations.length > MAX_OBSERVATIONS || (this.#observations.length > 2 && this.#observations[1]!.at < oldest)) this.#observations.shift();
  }

  /** The newest position seen. */
  get latest(): Observation | undefined {
    return this.#observations[this.#observations.length - 1];
  }

  /** The newest observation whose position is at most `lsn` (what a server that replayed `lsn` provably holds). */
  newestAtOrBelow(lsn: bigint): Observation | undefined {
    for (let i = this.#observations.length - 1; i >= 0; i--) if (this.#observations[i]!.lsn <= lsn) return this.#observations[i];
    return undefined;
  }

  /** The highest WAL rate (bytes per ms) between two consecutive observations over the last 10 s; 0 with fewer than two. */
  peakRate(now: number): number {
    let peak = 0;
    for (let i = this.#observations.length - 1; i > 0; i--) {
      const b = this.#observations[i]!;
      const a = this.#observations[i - 1]!;
      if (b.at < now - RATE_WINDOW_MILLIS) break;
      const dt = b.at - a.at;
      if (dt > 0) peak = Math.max(peak, Number(b.lsn - a.lsn) / dt);
    }
    return peak;
  }
}
