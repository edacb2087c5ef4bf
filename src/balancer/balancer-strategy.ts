/**
 * The contract between the balancer and a strategy. A strategy only picks among candidates the
 * balancer already filtered (healthy, not ejected, not excluded) and learns from outcomes.
 */
import type { BalancedInstance, NonEmptyArray } from './balancer-instance';
import type { Requirements } from './resource-requirements';

/** What a caller may say about one call; each strategy uses the fields it understands. */
export interface PickRequest {
  /** Affinity key (client IP, user id, …) for consistent hashing. */
  readonly key?: string;
  /** Extra requirements for resource-aware picking, e.g. `{ gpu_memory: '>=16GB' }`. */
  readonly requirements?: Requirements;
  /** Upper bound of the estimated cost of this call (cost-aware picking). */
  readonly maxCostPerRequest?: number;
}

/** What happened to one call. */
export interface CallOutcome {
  /** Time from pick to release, in ms. */
  readonly latencyMillis: number;
  /** `false` when the call threw, timed out or was classified as a failure. */
  readonly ok: boolean;
  /** The timeout the call ran under, if any (a call that timed out has a latency of at least this). */
  readonly timeoutMillis?: number;
}

/** A balancing strategy: a typed object, never a string switched on. */
export interface Strategy {
  /** Stable name for statistics and logs (`least-connections`, `peak-ewma`, …). */
  readonly name: string;
  /** Chooses one of the candidates. May throw (e.g. `BudgetExceededError`) when none fits. */
  pick(candidates: NonEmptyArray<BalancedInstance>, request: PickRequest): BalancedInstance;
  /** Learns from a released call. */
  onComplete?(instance: BalancedInstance, outcome: CallOutcome): void;
  /** Forgets per-instance state of a removed instance. */
  onRemove?(instanceId: string): void;
  /**
   * The instance is back in service after an ejection or failed health checks: what its failures
   * taught no longer holds (a latency strategy restarts it at par with the healthy instances).
   */
  onReturn?(instanceId: string): void;
}

/** @internal Load per unit of weight: what weighted least-loaded strategies minimise. */
export function loadPerWeight(instance: BalancedInstance): number {
  return (instance.inflight + 1) / Math.max(instance.effectiveWeight, Number.EPSILON);
}
