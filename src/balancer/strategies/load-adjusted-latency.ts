import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { isNonEmpty } from '../balancer-instance';
import type { Strategy } from '../balancer-strategy';
import { requireNonNegative, requirePositive } from '../../kernel/validate';
import { lowestScore } from './strategy-scan';
import { requireOptions } from '../balancer-option-checks';

/** Options of {@link loadAdjustedLatency}. */
export interface LoadAdjustedLatencyOptions {
  /**
   * How much load inflates the expected latency: `latency × (1 + loadWeight × inflight / capacity)`
   * (the original design uses 0.5).
   * @default 0.5
   */
  readonly loadWeight?: number;
  /**
   * Instances whose mean latency is above this, in ms, are skipped unless no other remains
   * (the original design's `max_latency`). `Infinity` skips none.
   * @default Infinity
   */
  readonly maxLatencyMillis?: number;
  /**
   * Latency assumed for an instance with no completed call yet, in ms.
   * @default 30
   */
  readonly initialLatencyMillis?: number;
}

/** Defaults of {@link LoadAdjustedLatencyOptions}. */
export const LOAD_ADJUSTED_LATENCY_DEFAULTS = Object.freeze({
  loadWeight: 0.5,
  maxLatencyMillis: Infinity,
  initialLatencyMillis: 30,
});

const LOAD_ADJUSTED_LATENCY_OPTIONS_KEYS: Readonly<Record<keyof LoadAdjustedLatencyOptions, true>> = { loadWeight: true, maxLatencyMillis: true, initialLatencyMillis: true };

/**
 * The original design's "latency-based" strategy, named for what it does: the lowest mean latency
 * (the balancer's EWMA of completed calls) inflated by current load relative to capacity
 * (`capacity` metadata, 1 when unset). Unlike peak EWMA it trusts the mean, so a latency spike
 * takes longer to show; use it when latency is stable and capacity is known.
 */
export function loadAdjustedLatency(options: LoadAdjustedLatencyOptions = {}): Strategy {
  requireOptions('', options, LOAD_ADJUSTED_LATENCY_OPTIONS_KEYS);
  const loadWeight = requireNonNegative('loadWeight', options.loadWeight ?? LOAD_ADJUSTED_LATENCY_DEFAULTS.loadWeight);
  const maxLatencyMillis = options.maxLatencyMillis ?? LOAD_ADJUSTED_LATENCY_DEFAULTS.maxLatencyMillis;
  if (maxLatencyMillis !== Infinity) requirePositive('maxLatencyMillis', maxLatencyMillis);
  const initial = requireNonNegative(
    'initialLatencyMillis',
    options.initialLatencyMillis ?? LOAD_ADJUSTED_LATENCY_DEFAULTS.initialLatencyMillis,
  );
  let start = 0;
  const latencyOf = (c: BalancedInstance): number => c.latencyEwmaMillis ?? initial;
  return {
    name: 'load-adjusted-latency',
    pick(candidates: NonEmptyArray<BalancedInstance>): BalancedInstance {
      const fast = candidates.filter((c) => latencyOf(c) <= maxLatencyMillis);
      const pool = isNonEmpty(fast) ? fast : candidates;
      const chosen = lowestScore(pool, start, (c) => {
        const load = c.inflight / Math.max(1, c.metadata.capacity ?? 1);
        return (latencyOf(c) * (1 + loadWeight * load)) / Math.max(c.effectiveWeight, Number.EPSILON);
      });
      start = (start + 1) % 0x7fffffff;
      return chosen;
    },
  };
}
