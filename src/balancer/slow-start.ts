/**
 * Slow start: a new or recovered instance gets a growing share of its weight over a window, so a
 * cold cache or JIT is not flooded at once (Envoy's slow start, HAProxy's `slowstart`).
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

/** @internal Validated slow-start settings and the weight factor they give. */
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

  /** `true` once the warm-up that began at `sinceMillis` is over. */
  isWarm(sinceMillis: number, nowMillis: number): boolean {
    return nowMillis - sinceMillis >= this.#windowMillis;
  }
}
