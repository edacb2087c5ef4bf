import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { mathRandom, type RandomSource } from '../../kernel/clock';
import type { Strategy } from '../balancer-strategy';
import { requireOptions } from '../balancer-option-checks';

/** Options of {@link weightedRandom}. */
export interface WeightedRandomOptions {
  /**
   * Source of uniform numbers in [0, 1).
   * @default Math.random
   */
  readonly random?: RandomSource;
}

const WEIGHTED_RANDOM_OPTIONS_KEYS: Readonly<Record<keyof WeightedRandomOptions, true>> = { random: true };

/**
 * Random choice in proportion to effective weight. Stateless and cheap; load-blind, so a slow
 * instance gets its full share.
 */
export function weightedRandom(options: WeightedRandomOptions = {}): Strategy {
  requireOptions('', options, WEIGHTED_RANDOM_OPTIONS_KEYS);
  const random = options.random ?? mathRandom;
  return {
    name: 'random',
    pick(candidates: NonEmptyArray<BalancedInstance>): BalancedInstance {
      let total = 0;
      for (const c of candidates) total += c.effectiveWeight;
      // Every weight 0 (e.g. all warming from a 0% slow start): uniform, not always the last.
      if (!(total > 0)) return candidates[Math.min(candidates.length - 1, Math.floor(random() * candidates.length))] as BalancedInstance;
      let point = random() * total;
      let last = candidates[0];
      for (const c of candidates) {
        if (!(c.effectiveWeight > 0)) continue;
        last = c;
        point -= c.effectiveWeight;
        if (point < 0) return c;
      }
      // Rounding left a sliver: the last candidate with weight, never a weight-0 one.
      return last;
    },
  };
}
