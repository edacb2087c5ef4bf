/**
 * Passive health: an instance whose calls fail several times in a row is ejected for a while,
 * longer each time it happens again (Envoy's outlier detection, consecutive-failure mode).
 */
import { requireInteger, requirePercent, requirePositive } from '../kernel/validate';
import { ConfigError } from '../kernel/errors';
import { requireOptions } from './balancer-option-checks';

/** Options of outlier ejection. */
export interface OutlierEjectionOptions {
  /**
   * Consecutive failed calls that eject an instance.
   * @default 5
   */
  readonly consecutiveFailures?: number;
  /**
   * Ejection time of a first ejection, in ms; the n-th recent ejection lasts n times this.
   * @default 30000
   */
  readonly baseEjectionTimeMillis?: number;
  /**
   * Upper bound of one ejection, in ms.
   * @default 300000
   */
  readonly maxEjectionTimeMillis?: number;
  /**
   * Most instances ejected at once, as a percent of all; at least one may always be ejected
   * unless this is 0, which turns ejection off (Envoy's rule).
   * @default 10
   */
  readonly maxEjectedPercent?: number;
}

/** Defaults of {@link OutlierEjectionOptions}. */
export const OUTLIER_EJECTION_DEFAULTS = Object.freeze({
  consecutiveFailures: 5,
  baseEjectionTimeMillis: 30_000,
  maxEjectionTimeMillis: 300_000,
  maxEjectedPercent: 10,
});

const OUTLIER_EJECTION_KEYS: Readonly<Record<keyof OutlierEjectionOptions, true>> = {
  consecutiveFailures: true,
  baseEjectionTimeMillis: true,
  maxEjectionTimeMillis: true,
  maxEjectedPercent: true,
};

interface EjectionState {
  consecutiveFailures: number;
  /** Recent ejections; decays by one per base ejection time spent un-ejected. */
  ejectionCount: number;
  ejectedUntilMillis: number | undefined;
  lastReturnMillis: number;
}

/** An ejection that just happened. */
export interface Ejection {
  readonly instanceId: string;
  readonly untilMillis: number;
  readonly ejectionCount: number;
}

/** @internal Tracks consecutive failures and ejections per instance. Time is passed in, never read. */
export class OutlierEjector {
  readonly #options: Required<OutlierEjectionOptions>;
  readonly #states = new Map<string, EjectionState>();

  constructor(options: OutlierEjectionOptions = {}) {
    const o = { ...OUTLIER_EJECTION_DEFAULTS, ...requireOptions('outlierEjection', options, OUTLIER_EJECTION_KEYS) };
    requireInteger('outlierEjection.consecutiveFailures', o.consecutiveFailures, 1);
    requirePositive('outlierEjection.baseEjectionTimeMillis', o.baseEjectionTimeMillis);
    requirePositive('outlierEjection.maxEjectionTimeMillis', o.maxEjectionTimeMillis);
    requirePercent('outlierEjection.maxEjectedPercent', o.maxEjectedPercent);
    if (o.maxEjectionTimeMillis < o.baseEjectionTimeMillis) {
      throw new ConfigError('outlierEjection.maxEjectionTimeMillis', 'must be >= baseEjectionTimeMillis');
    }
    this.#options = Object.freeze(o);
  }

  #state(id: string): EjectionState {
    let s = this.#states.get(id);
    if (s === undefined) {
      s = { consecutiveFailures: 0, ejectionCount: 0, ejectedUntilMillis: undefined, lastReturnMillis: -Infinity };
      this.#states.set(id, s);
    }
    return s;
  }

  /** Most instances that may be ejected at once among `total`. */
  maxEjected(total: number): number {
    const pct = this.#options.maxEjectedPercent;
    return pct === 0 ? 0 : Math.max(1, Math.floor((total * pct) / 100));
  }

  /** Number of instances ejected now. */
  get ejectedCount(): number {
    let n = 0;
    for (const s of this.#states.values()) if (s.ejectedUntilMillis !== undefined) n++;
    return n;
  }

  /** `true` while the instance is ejected (until {@link release} returns it). */
  isEjected(id: string): boolean {
    return this.#states.get(id)?.ejectedUntilMillis !== undefined;
  }

  /** End of the current ejection, or `undefined`. */
  ejectedUntil(id: string): number | undefined {
    return this.#states.get(id)?.ejectedUntilMillis;
  }

  /** Consecutive failures counted for the instance. */
  consecutiveFailures(id: string): number {
    return this.#states.get(id)?.consecutiveFailures ?? 0;
  }

  /**
   * Records a call's result; returns the ejection it caused, if any. `total` is the number of
   * instances, used for the ejected-share bound.
   */
  record(id: string, ok: boolean, nowMillis: number, total: number): Ejection | undefined {
    const s = this.#state(id);
    if (ok) {
      s.consecutiveFailures = 0;
      return undefined;
    }
    s.consecutiveFailures++;
    if (s.ejectedUntilMillis !== undefined) return undefined;
    if (s.consecutiveFailures < this.#options.consecutiveFailures) return undefined;
    if (this.ejectedCount >= this.maxEjected(total)) return undefined;
    const { baseEjectionTimeMillis, maxEjectionTimeMillis } = this.#options;
    const quietPeriods = Math.floor((nowMillis - s.lastReturnMillis) / baseEjectionTimeMillis);
    s.ejectionCount = Math.max(0, s.ejectionCount - (Number.isFinite(quietPeriods) ? quietPeriods : s.ejectionCount)) + 1;
    s.ejectedUntilMillis = nowMillis + Math.min(baseEjectionTimeMillis * s.ejectionCount, maxEjectionTimeMillis);
    s.consecutiveFailures = 0;
    return { instanceId: id, untilMillis: s.ejectedUntilMillis, ejectionCount: s.ejectionCount };
  }

  /** Returns the instances whose ejection has ended by `nowMillis`, and marks them back. */
  release(nowMillis: number): string[] {
    const back: string[] = [];
    for (const [id, s] of this.#states) {
      if (s.ejectedUntilMillis !== undefined && s.ejectedUntilMillis <= nowMillis) {
        this.#unEject(s, nowMillis);
        back.push(id);
      }
    }
    return back;
  }

  #unEject(s: EjectionState, nowMillis: number): void {
    s.ejectedUntilMillis = undefined;
    s.lastReturnMillis = nowMillis;
    // Failures of calls that finished while it was ejected (or in panic) must not re-eject it at once.
    s.consecutiveFailures = 0;
  }

  /**
   * Returns instances early, earliest-ending first, until no more than the cap for `total`
   * instances are ejected (after instances were removed); returns their ids.
   */
  enforceCap(total: number, nowMillis: number): string[] {
    const ejected = [...this.#states].filter(([, s]) => s.ejectedUntilMillis !== undefined);
    const excess = ejected.length - this.maxEjected(total);
    if (excess <= 0) return [];
    ejected.sort((a, b) => (a[1].ejectedUntilMillis as number) - (b[1].ejectedUntilMillis as number));
    return ejected.slice(0, excess).map(([id, s]) => {
      this.#unEject(s, nowMillis);
      return id;
    });
  }

  /** Forgets a removed instance. */
  remove(id: string): void {
    this.#states.delete(id);
  }
}
