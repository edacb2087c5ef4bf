/**
 * How a set of members kept outside the {@link Balancer} lends them to a {@link Strategy}. The
 * replica sets of `src/replication` keep their own members (servers with lag, identity, health and
 * ejection state): each member implements {@link BalancedInstance} for real, the owner filters the
 * members that may take a call, and {@link pickCandidate} returns the strategy's choice as the
 * owner's own member type, never cast.
 */
import { isNonEmpty, type BalancedInstance } from './balancer-instance';
import type { PickRequest, Strategy } from './balancer-strategy';

/** Members a strategy picks among, kept by their owner: health and ejection are the owner's, outcomes go to the strategy. */
export interface CandidateSet<T extends BalancedInstance> {
  /** The members that may take a call now (healthy, not ejected, within the owner's bounds). */
  candidates(): readonly T[];
}

/**
 * The candidate `strategy` picks among `candidates`, as the caller's member; `undefined` when there
 * is none, when the strategy throws (none fits), or when it answers with an object that is not one
 * of the candidates (a strategy bug, which must not send a call to an unchecked member).
 */
export function pickCandidate<T extends BalancedInstance>(strategy: Strategy, candidates: readonly T[], request: PickRequest = {}): T | undefined {
  if (!isNonEmpty(candidates)) return undefined;
  let picked: BalancedInstance;
  try {
    picked = strategy.pick(candidates, request);
  } catch {
    return undefined;
  }
  for (const candidate of candidates) if (candidate === picked) return candidate;
  return undefined;
}
