import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { systemClock, type Clock } from '../../kernel/clock';
import type { CallOutcome, Strategy } from '../balancer-strategy';
import { requireNonNegative, requirePositive } from '../../kernel/validate';
import { lowestScore } from './strategy-scan';
import { requireOptions } from '../balancer-option-checks';

/** Options of {@link peakEwma}. */
export interface PeakEwmaOptions {
  /**
   * Time constant of the moving average, in ms: an observation's weight falls to 1/e after this
   * long. Time-based, so the estimate means the same at 10 and 10,000 calls per second.
   * @default 10000
   */
  readonly decayTimeMillis?: number;
  /**
   * Latency assumed for an instance with no observation yet, in ms (Linkerd uses 30 ms).
   * @default 30
   */
  readonly initialLatencyMillis?: number;
  /**
   * What a failed call costs, as a multiple of what a call to the healthy instances costs now
   * (their latency estimate × (calls in flight + 1), averaged): a fast error is charged as a call
   * this many times slower than the alternatives, whatever their latency, so it does not attract
   * traffic. A call that failed slower than that is charged its own latency.
   * @default 4
   */
  readonly failurePenaltyFactor?: number;
  /**
   * What a failed call costs, in ms, while no other instance has answered successfully (nothing to
   * scale the penalty by yet).
   * @default 1000
   */
  readonly failurePenaltyMillis?: number;
  /**
   * Source of time.
   * @default systemClock
   */
  readonly clock?: Clock;
}

/** Defaults of {@link PeakEwmaOptions}. */
export const PEAK_EWMA_DEFAULTS = Object.freeze({
  decayTimeMillis: 10_000,
  initialLatencyMillis: 30,
  failurePenaltyFactor: 4,
  failurePenaltyMillis: 1_000,
});

/** The peak-EWMA strategy, which also shows its current estimate of an instance (for tests and dashboards). */
export interface PeakEwma extends Strategy {
  /** The decayed latency estimate of an instance, in ms (the initial latency for one never seen). */
  estimateMillis(instanceId: string): number;
}

interface Estimate {
  costMillis: number;
  stampMillis: number;
  /** Whether the last call finished well (only then does it count as a healthy reference). */
  lastOk: boolean;
}

const PEAK_EWMA_OPTIONS_KEYS: Readonly<Record<keyof PeakEwmaOptions, true>> = {
  decayTimeMillis: true,
  initialLatencyMillis: true,
  failurePenaltyFactor: true,
  failurePenaltyMillis: true,
  clock: true,
};

/**
 * Response-time balancing with a peak-sensitive EWMA (Finagle's and Linkerd's "peak EWMA"):
 * each instance's latency estimate jumps to any slower observation at once and decays back
 * toward faster ones with the time constant; the pick is the lowest
 * `cost × (inflight + 1) / effectiveWeight` over all candidates, ties in turn, where the cost is
 * the estimate or the age of the instance's oldest call in flight, whichever is larger. While an
 * instance gets no traffic its estimate decays toward zero, so it is probed again later; while its
 * calls hang, their age keeps it expensive (a blackholed instance stops attracting callers).
 *
 * An instance back in service (after an ejection or failed health checks) restarts at the mean
 * estimate of the healthy instances, so with slow start it reaches its fair share when the warm-up
 * window ends instead of waiting for its failure penalties to decay.
 *
 * A failed call is charged as a call `failurePenaltyFactor` times as costly as a call to the
 * healthy instances is now, so a backend that fails fast stays unattractive whether the healthy
 * ones answer in 1 ms or in 300 ms.
 *
 * Best default for heterogeneous or changing instances: it avoids slow and failing ones.
 */
export function peakEwma(options: PeakEwmaOptions = {}): PeakEwma {
  requireOptions('', options, PEAK_EWMA_OPTIONS_KEYS);
  const decayTimeMillis = requirePositive('decayTimeMillis', options.decayTimeMillis ?? PEAK_EWMA_DEFAULTS.decayTimeMillis);
  const initialLatencyMillis = requireNonNegative(
    'initialLatencyMillis',
    options.initialLatencyMillis ?? PEAK_EWMA_DEFAULTS.initialLatencyMillis,
  );
  const failurePenaltyFactor = requirePositive(
    'failurePenaltyFactor',
    options.failurePenaltyFactor ?? PEAK_EWMA_DEFAULTS.failurePenaltyFactor,
  );
  const failurePenaltyMillis = requireNonNegative(
    'failurePenaltyMillis',
    options.failurePenaltyMillis ?? PEAK_EWMA_DEFAULTS.failurePenaltyMillis,
  );
  const clock = options.clock ?? systemClock;
  const estimates = new Map<string, Estimate>();
  /** The candidates of the last pick: the alternatives a failure is compared with. */
  let lastCandidates: readonly BalancedInstance[] = [];
  let start = 0;

  const estimateOf = (id: string, now: number): Estimate => {
    let e = estimates.get(id);
    if (e === undefined) {
      e = { costMillis: initialLatencyMillis, stampMillis: now, lastOk: false };
      estimates.set(id, e);
    }
    return e;
  };
  const decayed = (e: Estimate, now: number): number =>
    e.costMillis * Math.exp(-Math.max(0, now - e.stampMillis) / decayTimeMillis);
  // A call in flight longer than the estimate is already a slower observation: an instance that
  // stopped answering looks slower every moment instead of decaying toward 0.
  const costOf = (c: BalancedInstance, now: number): number =>
    Math.max(decayed(estimateOf(c.id, now), now), c.oldestInflightAgeMillis ?? 0);
  /** Mean cost of a call to the other instances whose last call went well, or `undefined`. */
  const healthyCost = (failedId: string, now: number): number | undefined => {
    let sum = 0;
    let count = 0;
    for (const c of lastCandidates) {
      if (c.id === failedId || estimates.get(c.id)?.lastOk !== true) continue;
      sum += costOf(c, now) * (c.inflight + 1);
      count++;
    }
    return count === 0 ? undefined : sum / count;
  };

  return {
    name: 'peak-ewma',
    pick(candidates: NonEmptyArray<BalancedInstance>): BalancedInstance {
      const now = clock.monotonicNow();
      lastCandidates = candidates;
      const chosen = lowestScore(
        candidates,
        start,
        (c) => (costOf(c, now) * (c.inflight + 1)) / Math.max(c.effectiveWeight, Number.EPSILON),
      );
      start = (start + 1) % 0x7fffffff;
      return chosen;
    },
    onComplete(instance: BalancedInstance, outcome: CallOutcome): void {
      const now = clock.monotonicNow();
      let rtt = outcome.latencyMillis;
      if (!outcome.ok) {
        const reference = healthyCost(instance.id, now);
        rtt = Math.max(rtt, reference === undefined ? failurePenaltyMillis : failurePenaltyFactor * reference);
      }
      const e = estimateOf(instance.id, now);
      e.lastOk = outcome.ok;
      if (rtt > e.costMillis) {
        e.costMillis = rtt;
      } else {
        const w = Math.exp(-Math.max(0, now - e.stampMillis) / decayTimeMillis);
        e.costMillis = e.costMillis * w + rtt * (1 - w);
      }
      e.stampMillis = now;
    },
    onRemove(instanceId: string): void {
      estimates.delete(instanceId);
      lastCandidates = lastCandidates.filter((c) => c.id !== instanceId);
    },
    onReturn(instanceId: string): void {
      // Back from an ejection or failed health checks: its failure penalties would keep it starved
      // long after it recovered. It restarts at par with the healthy instances (slow start ramps its
      // share), and its first calls show at once if it is still slow (the estimate is peak-sensitive).
      const now = clock.monotonicNow();
      let sum = 0;
      let count = 0;
      for (const [id, e] of estimates) {
        if (id === instanceId || !e.lastOk) continue;
        sum += decayed(e, now);
        count++;
      }
      estimates.set(instanceId, { costMillis: count === 0 ? initialLatencyMillis : sum / count, stampMillis: now, lastOk: false });
    },
    estimateMillis(instanceId: string): number {
      const now = clock.monotonicNow();
      return decayed(estimateOf(instanceId, now), now);
    },
  };
}
