import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { systemClock, type Clock } from '../../kernel/clock';
import type { CallOutcome, Strategy } from '../balancer-strategy';
import { requireNonNegative, requirePositive } from '../../kernel/validate';
import { lowestScore } from './strategy-scan';

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
   * Least latency charged for a failed call, in ms, when the call ran without a timeout; with a
   * timeout, a failure is charged at least the timeout. Keeps fast errors from attracting traffic.
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
}

/**
 * Response-time balancing with a peak-sensitive EWMA (Finagle's and Linkerd's "peak EWMA"):
 * each instance's latency estimate jumps to any slower observation at once and decays back
 * toward faster ones with the time constant; the pick is the lowest
 * `cost × (inflight + 1) / effectiveWeight` over all candidates, ties in turn, where the cost is
 * the estimate or the age of the instance's oldest call in flight, whichever is larger. While an
 * instance gets no traffic its estimate decays toward zero, so it is probed again later; while its
 * calls hang, their age keeps it expensive (a blackholed instance stops attracting callers).
 *
 * Best default for heterogeneous or changing instances: it avoids slow and failing ones.
 */
export function peakEwma(options: PeakEwmaOptions = {}): PeakEwma {
  const decayTimeMillis = requirePositive('decayTimeMillis', options.decayTimeMillis ?? PEAK_EWMA_DEFAULTS.decayTimeMillis);
  const initialLatencyMillis = requireNonNegative(
    'initialLatencyMillis',
    options.initialLatencyMillis ?? PEAK_EWMA_DEFAULTS.initialLatencyMillis,
  );
  const failurePenaltyMillis = requireNonNegative(
    'failurePenaltyMillis',
    options.failurePenaltyMillis ?? PEAK_EWMA_DEFAULTS.failurePenaltyMillis,
  );
  const clock = options.clock ?? systemClock;
  const estimates = new Map<string, Estimate>();
  let start = 0;

  const estimateOf = (id: string, now: number): Estimate => {
    let e = estimates.get(id);
    if (e === undefined) {
      e = { costMillis: initialLatencyMillis, stampMillis: now };
      estimates.set(id, e);
    }
    return e;
  };
  const decayed = (e: Estimate, now: number): number =>
    e.costMillis * Math.exp(-Math.max(0, now - e.stampMillis) / decayTimeMillis);

  return {
    name: 'peak-ewma',
    pick(candidates: NonEmptyArray<BalancedInstance>): BalancedInstance {
      const now = clock.monotonicNow();
      const chosen = lowestScore(candidates, start, (c) => {
        // A call in flight longer than the estimate is already a slower observation: an instance
        // that stopped answering looks slower every moment instead of decaying toward 0.
        const cost = Math.max(decayed(estimateOf(c.id, now), now), c.oldestInflightAgeMillis ?? 0);
        return (cost * (c.inflight + 1)) / Math.max(c.effectiveWeight, Number.EPSILON);
      });
      start = (start + 1) % 0x7fffffff;
      return chosen;
    },
    onComplete(instance: BalancedInstance, outcome: CallOutcome): void {
      const now = clock.monotonicNow();
      const e = estimateOf(instance.id, now);
      const rtt = outcome.ok
        ? outcome.latencyMillis
        : Math.max(outcome.latencyMillis, outcome.timeoutMillis ?? failurePenaltyMillis);
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
    },
    estimateMillis(instanceId: string): number {
      const now = clock.monotonicNow();
      return decayed(estimateOf(instanceId, now), now);
    },
  };
}
