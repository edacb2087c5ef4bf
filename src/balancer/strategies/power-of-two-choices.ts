import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { mathRandom, type RandomSource } from '../../kernel/clock';
import { loadPerWeight, type Strategy } from '../balancer-strategy';
import { requireOptions } from '../balancer-option-checks';

/** Options of {@link powerOfTwoChoices}. */
export interface PowerOfTwoChoicesOptions {
  /**
   * Source of uniform numbers in [0, 1).
   * @default Math.random
   */
  readonly random?: RandomSource;
}

const POWER_OF_TWO_CHOICES_OPTIONS_KEYS: Readonly<Record<keyof PowerOfTwoChoicesOptions, true>> = { random: true };

/**
 * Power of two choices: two distinct random candidates, the one with fewer calls in flight per
 * unit of weight wins. Constant time, and avoids the herding of a full scan when many balancers
 * share stale load figures (Envoy's default "least request").
 */
export function powerOfTwoChoices(options: PowerOfTwoChoicesOptions = {}): Strategy {
  requireOptions('', options, POWER_OF_TWO_CHOICES_OPTIONS_KEYS);
  const random = options.random ?? mathRandom;
  return {
    name: 'power-of-two-choices',
    pick(candidates: NonEmptyArray<BalancedInstance>): BalancedInstance {
      const n = candidates.length;
      if (n === 1) return candidates[0];
      const i = Math.floor(random() * n);
      // Second index drawn from the other n - 1 so the two are distinct.
      const j = (i + 1 + Math.floor(random() * (n - 1))) % n;
      const a = candidates[i] as BalancedInstance;
      const b = candidates[j] as BalancedInstance;
      return loadPerWeight(b) < loadPerWeight(a) ? b : a;
    },
  };
}
