import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { isNonEmpty } from '../balancer-instance';
import { BudgetExceededError } from '../balancer-errors';
import type { PickRequest, Strategy } from '../balancer-strategy';
import { requireNonNegative, requirePositive } from '../../kernel/validate';
import { lowestScore } from './strategy-scan';
import { requireOptions } from '../balancer-option-checks';

/** Options of {@link costAware}. */
export interface CostAwareOptions {
  /**
   * Budget per call: instances whose estimated cost per call is higher are skipped, and
   * `BudgetExceededError` is thrown when none fits. A call's `maxCostPerRequest` overrides it.
   * `Infinity` means no budget.
   * @default Infinity
   */
  readonly maxCostPerRequest?: number;
  /**
   * Duration assumed for an instance with no completed call yet, in ms.
   * @default 100
   */
  readonly initialDurationMillis?: number;
}

/** Defaults of {@link CostAwareOptions}. */
export const COST_AWARE_DEFAULTS = Object.freeze({ maxCostPerRequest: Infinity, initialDurationMillis: 100 });

const COST_AWARE_OPTIONS_KEYS: Readonly<Record<keyof CostAwareOptions, true>> = { maxCostPerRequest: true, initialDurationMillis: true };

/**
 * Cost-aware picking (the original design's "performance per cost"): the expected duration of a
 * call is the instance's mean latency inflated by its load (`× (1 + inflight / capacity)`), its
 * cost is `costPerHour × duration`; among instances within the budget and below capacity it picks
 * the lowest `cost × duration`, i.e. the most performance per unit of money. An instance without
 * `costPerHour` costs nothing.
 *
 * Use it for batch work on instances with different prices (spot vs on-demand, GPU tiers).
 */
export function costAware(options: CostAwareOptions = {}): Strategy {
  requireOptions('', options, COST_AWARE_OPTIONS_KEYS);
  const defaultBudget = options.maxCostPerRequest ?? COST_AWARE_DEFAULTS.maxCostPerRequest;
  if (defaultBudget !== Infinity) requireNonNegative('maxCostPerRequest', defaultBudget);
  const initialDurationMillis = requirePositive(
    'initialDurationMillis',
    options.initialDurationMillis ?? COST_AWARE_DEFAULTS.initialDurationMillis,
  );
  let start = 0;
  const durationOf = (c: BalancedInstance): number =>
    (c.latencyEwmaMillis ?? initialDurationMillis) * (1 + c.inflight / Math.max(1, c.metadata.capacity ?? 1));
  const costOf = (c: BalancedInstance): number => ((c.metadata.costPerHour ?? 0) * durationOf(c)) / 3_600_000;
  return {
    name: 'cost-aware',
    pick(candidates: NonEmptyArray<BalancedInstance>, request: PickRequest): BalancedInstance {
      const budget = request.maxCostPerRequest ?? defaultBudget;
      const affordable = candidates.filter((c) => costOf(c) <= budget);
      if (!isNonEmpty(affordable)) {
        throw new BudgetExceededError(budget, Math.min(...candidates.map(costOf)));
      }
      const open = affordable.filter((c) => c.metadata.capacity === undefined || c.inflight < c.metadata.capacity);
      const pool = isNonEmpty(open) ? open : affordable;
      // Free instances (cost 0) tie at 0; the duration term then prefers the faster one.
      const chosen = lowestScore(pool, start, (c) => costOf(c) * durationOf(c) + durationOf(c) * 1e-12);
      start = (start + 1) % 0x7fffffff;
      return chosen;
    },
  };
}
