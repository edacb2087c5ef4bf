import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';

/**
 * @internal
 * Full scan for the lowest score; when several candidates share it, the `turn`-th of them (mod
 * their count) wins, so equal candidates are served in turn rather than always the first listed.
 */
export function lowestScore(
  candidates: NonEmptyArray<BalancedInstance>,
  turn: number,
  score: (instance: BalancedInstance) => number,
): BalancedInstance {
  let bestScore = Infinity;
  let ties: BalancedInstance[] = [];
  for (const candidate of candidates) {
    const s = score(candidate);
    if (s < bestScore) {
      bestScore = s;
      ties = [candidate];
    } else if (s === bestScore) {
      ties.push(candidate);
    }
  }
  // Every score NaN or +Infinity: fall back to taking turns over all.
  if (ties.length === 0) ties = [...candidates];
  return ties[turn % ties.length] as BalancedInstance;
}
