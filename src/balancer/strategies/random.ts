import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { mathRandom, type RandomSource } from '../balancer-clock';
import type { Strategy } from '../balancer-strategy';

/** Options of {@link weightedRandom}. */
export interface WeightedRandomOptions {
  /**
   * Source of uniform numbers in [0, 1).
   * @default Math.random
   */
  readonly random?: RandomSource;
}

/**
 * Random choice in proportion to effective weight. Stateless and cheap; load-blind, so a slow
 * instance gets its full share.
 */
export function weightedRandom(options: WeightedRandomOptions = {}): Strategy {
  const random = options.random ?? mathRandom;
  return {
    name: 'random',
    pick(candidates: NonEmptyArray<BalancedInstance>): BalancedInstance {
      let total = 0;
      for (const c of candidates) total += c.effectiveWeight;
      let point = random() * total;
      for (const c of candidates) {
        point -= c.effectiveWeight;
        if (point < 0) return c;
      }
      return candidates[candidates.length - 1] as BalancedInstance;
    },
  };
}
