import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import type { Strategy } from '../balancer-strategy';

/**
 * Plain round-robin: each candidate in turn, ignoring weight and load. Good when instances are
 * identical and calls cost the same; it keeps sending to a slow instance.
 */
export function roundRobin(): Strategy {
  let next = 0;
  return {
    name: 'round-robin',
    pick(candidates: NonEmptyArray<BalancedInstance>): BalancedInstance {
      const chosen = candidates[next % candidates.length] as BalancedInstance;
      next = (next + 1) % 0x7fffffff;
      return chosen;
    },
  };
}
