/**
 * Slow start: a new or recovered instance gets a growing share of its weight over a window, so a
 * cold cache or JIT is not flooded at once (Envoy's slow start, HAProxy's `slowstart`). It applies
 * to every strategy: weight-aware ones see the reduced effective weight, and the balancer caps a
 * warming instance's share of picks at `factor × its fair share` whatever the strategy does.
 */
import { requireNonNegative, requirePercent, requirePositive } from '../kernel/validate';
import { requireOptions } from './balancer-option-checks';

/** Options of slow start. */
export interface SlowStartOptions {
  /**
   * Length of the warm-up, in ms; 0 turns slow start off.
   * @default 10000
   */
  readonly windowMillis?: number;
  /**
   * Shape of the ramp: the weight factor is `(elapsed / window) ^ (1 / aggression)`; 1 is linear,
   * larger values ramp faster at first.
   * @default 1
   */
  readonly aggression?: number;
  /**
   * Smallest weight factor during the warm-up, in percent, so a warming instance still gets some calls.
   * @default 10
   */
  readonly minWeightPercent?: number;
}

/** Defaults of {@link SlowStartOptions}. */
export const SLOW_START_DEFAULTS = Object.freeze({ windowMillis: 10_000, aggression: 1, minWeightPercent: 10 });

const SLOW_START_KEYS: Readonly<Record<keyof SlowStartOptions, true>> = { windowMillis: true, aggression: true, minWeightPercent: true };

/** What slow start reads and keeps per instance. */
interface Warming {
  readonly weight: number;
  /** `weight` × the slow-start factor; below `weight` while the instance warms up. */
  readonly effectiveWeight: number;
  /** Picks the instance may take now: grows by its share of each pick, spent when it is picked. */
  slowStartCredit: number;
}

/**
 * @internal
 * Validated slow-start settings, the weight factor they give, and the share cap that makes slow
 * start hold for every strategy (weight-aware or not).
 */
export class SlowStart {
  readonly #windowMillis: number;
  readonly #aggression: number;
  readonly #minFactor: number;

  constructor(options: SlowStartOptions = {}) {
    const o = { ...SLOW_START_DEFAULTS, ...requireOptions('slowStart', options, SLOW_START_KEYS) };
    this.#windowMillis = requireNonNegative('slowStart.windowMillis', o.windowMillis);
    this.#aggression = requirePositive('slowStart.aggression', o.aggression);
    this.#minFactor = requirePercent('slowStart.minWeightPercent', o.minWeightPercent) / 100;
  }

  /** Weight factor (0 to 1] for an instance warming since `sinceMillis`; 1 when warm or off. */
  factor(sinceMillis: number | undefined, nowMillis: number): number {
    if (sinceMillis === undefined || this.#windowMillis === 0) return 1;
    const elapsed = nowMillis - sinceMillis;
    if (elapsed >= this.#windowMillis) return 1;
    return Math.max(this.#minFactor, (Math.max(0, elapsed) / this.#windowMillis) ** (1 / this.#aggression));
  }

  /**
   * The candidates a pick may choose from: a warming instance may take at most `factor × its fair
   * share` of the picks (its effective weight over the candidates' total weight), counted as credit
   * it earns on every pick and spends when picked; without a whole pick's credit it is left out
   * (unless nothing else is left). Whatever the strategy, round-robin included.
   */
  admit<T extends Warming>(candidates: T[]): T[] {
    let totalWeight = 0;
    let warming = 0;
    for (const c of candidates) {
      totalWeight += c.weight;
      if (c.effectiveWeight < c.weight) warming++;
    }
    if (warming === 0) return candidates;
    const admitted: T[] = [];
    for (const c of candidates) {
      if (c.effectiveWeight < c.weight) {
        // Up to two picks' worth is kept, so a strategy that takes turns (round-robin) and reaches
        // the instance a few picks after it became eligible loses none of its share.
        c.slowStartCredit = Math.min(2, c.slowStartCredit + c.effectiveWeight / totalWeight);
        if (c.slowStartCredit < 1) continue;
      }
      admitted.push(c);
    }
    return admitted.length > 0 ? admitted : candidates;
  }

  /** Spends a pick's credit of a warming instance the strategy chose. */
  picked(instance: Warming): void {
    if (instance.effectiveWeight < instance.weight) instance.slowStartCredit = Math.max(0, instance.slowStartCredit - 1);
  }

  /** `true` once the warm-up that began at `sinceMillis` is over. */
  isWarm(sinceMillis: number, nowMillis: number): boolean {
    return nowMillis - sinceMillis >= this.#windowMillis;
  }
}
