import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import type { Strategy } from '../balancer-strategy';

/**
 * Smooth weighted round-robin (the NGINX algorithm): every pick adds each candidate's effective
 * weight to its running score, takes the highest and subtracts the total. Weights 5:1:1 give
 * `a a b a c a a`, not `a a a a a b c`. Use it for static capacity differences with cheap calls.
 */
export function smoothWeightedRoundRobin(): Strategy {
  const current = new Map<string, number>();
  let turn = 0;
  return {
    name: 'smooth-weighted-round-robin',
    pick(candidates: NonEmptyArray<BalancedInstance>): BalancedInstance {
      let total = 0;
      let best = candidates[0];
      let bestScore = -Infinity;
      for (const candidate of candidates) {
        const weight = candidate.effectiveWeight;
        total += weight;
        const score = (current.get(candidate.id) ?? 0) + weight;
        current.set(candidate.id, score);
        if (score > bestScore) {
          best = candidate;
          bestScore = score;
        }
      }
      if (!(total > 0)) {
        // Every weight 0: plain turns instead of always the first.
        turn = (turn + 1) % 0x7fffffff;
        return candidates[turn % candidates.length] as BalancedInstance;
      }
      current.set(best.id, bestScore - total);
      return best;
    },
    onRemove(instanceId: string): void {
      current.delete(instanceId);
    },
  };
}
