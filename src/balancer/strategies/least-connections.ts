import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { loadPerWeight, type Strategy } from '../balancer-strategy';
import { lowestScore } from './strategy-scan';

/**
 * Weighted least-connections with a full scan: the candidate with the fewest calls in flight per
 * unit of effective weight, `(inflight + 1) / weight`; ties are served round-robin. Reacts to
 * slow instances through their growing in-flight count, but is attracted by instances that fail
 * fast (they always look idle).
 */
export function leastConnections(): Strategy {
  let start = 0;
  return {
    name: 'least-connections',
    pick(candidates: NonEmptyArray<BalancedInstance>): BalancedInstance {
      const chosen = lowestScore(candidates, start, loadPerWeight);
      start = (start + 1) % 0x7fffffff;
      return chosen;
    },
  };
}
