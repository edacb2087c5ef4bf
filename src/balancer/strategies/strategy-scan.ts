import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';

/**
 * Full scan for the lowest score, starting at `start` (mod length) so that equal scores are
 * served in turn rather than always the first listed.
 */
export function lowestScore(
  candidates: NonEmptyArray<BalancedInstance>,
  start: number,
  score: (instance: BalancedInstance) => number,
): BalancedInstance {
  const n = candidates.length;
  const offset = start % n;
  let best = candidates[offset] as BalancedInstance;
  let bestScore = score(best);
  for (let i = 1; i < n; i++) {
    const candidate = candidates[(offset + i) % n] as BalancedInstance;
    const s = score(candidate);
    if (s < bestScore) {
      best = candidate;
      bestScore = s;
    }
  }
  return best;
}

