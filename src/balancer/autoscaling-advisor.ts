/**
 * Recommends scaling a service up or down from the balancer's statistics, with the reasons. It
 * only advises; acting on it (Kubernetes, an ASG) is the caller's business. Thresholds and
 * cooldowns come from the original design's auto-scaling balancer and scaling policies.
 */
import { systemClock, type Clock } from '../kernel/clock';
import type { BalancerStats } from './balancer-stats';
import { requireInteger, requireNonNegative, requirePercent } from '../kernel/validate';
import { ConfigError } from '../kernel/errors';
import { requireOptions } from './balancer-option-checks';

/** Options of {@link AutoscalingAdvisor}. */
export interface AutoscalingAdvisorOptions {
  /** Mean latency above which to scale up, in ms. @default 2000 */
  readonly highLatencyMillis?: number;
  /** Mean latency under which scaling down is allowed, in ms. @default 500 */
  readonly lowLatencyMillis?: number;
  /** Calls in flight (all instances) above which to scale up. @default 80 */
  readonly highInflight?: number;
  /** Calls in flight under which scaling down is allowed. @default 10 */
  readonly lowInflight?: number;
  /** Mean reported CPU above which to scale up, in percent. @default 80 */
  readonly highCpuPercent?: number;
  /** Mean reported CPU under which scaling down is allowed, in percent. @default 30 */
  readonly lowCpuPercent?: number;
  /** Instances added per scale-up. @default 2 */
  readonly scaleUpStep?: number;
  /** Instances removed per scale-down. @default 1 */
  readonly scaleDownStep?: number;
  /** Fewest instances. @default 2 */
  readonly minInstances?: number;
  /** Most instances. @default 20 */
  readonly maxInstances?: number;
  /** Time after any scaling before another scale-up is advised, in ms. @default 300000 */
  readonly scaleUpCooldownMillis?: number;
  /** Time after any scaling before a scale-down is advised, in ms. @default 600000 */
  readonly scaleDownCooldownMillis?: number;
  /** Source of time. @default systemClock */
  readonly clock?: Clock;
}

/** Defaults of {@link AutoscalingAdvisorOptions}. */
export const AUTOSCALING_ADVISOR_DEFAULTS = Object.freeze({
  highLatencyMillis: 2_000,
  lowLatencyMillis: 500,
  highInflight: 80,
  lowInflight: 10,
  highCpuPercent: 80,
  lowCpuPercent: 30,
  scaleUpStep: 2,
  scaleDownStep: 1,
  minInstances: 2,
  maxInstances: 20,
  scaleUpCooldownMillis: 300_000,
  scaleDownCooldownMillis: 600_000,
});

/** What the advisor recommends. */
export type ScalingAction = 'scale-up' | 'scale-down' | 'hold';

/** A recommendation and why. */
export interface ScalingAdvice {
  readonly action: ScalingAction;
  readonly currentInstances: number;
  readonly targetInstances: number;
  readonly reasons: readonly string[];
}

const AUTOSCALING_ADVISOR_OPTIONS_KEYS: Readonly<Record<keyof AutoscalingAdvisorOptions, true>> = {
  highLatencyMillis: true,
  lowLatencyMillis: true,
  highInflight: true,
  lowInflight: true,
  highCpuPercent: true,
  lowCpuPercent: true,
  scaleUpStep: true,
  scaleDownStep: true,
  minInstances: true,
  maxInstances: true,
  scaleUpCooldownMillis: true,
  scaleDownCooldownMillis: true,
  clock: true,
};

/** Turns statistics into scaling advice, remembering its last advice for the cooldowns. */
export class AutoscalingAdvisor {
  readonly #o: Readonly<Omit<Required<AutoscalingAdvisorOptions>, 'clock'>>;
  readonly #clock: Clock;
  #lastScalingMillis = -Infinity;

  constructor(options: AutoscalingAdvisorOptions = {}) {
    requireOptions('', options, AUTOSCALING_ADVISOR_OPTIONS_KEYS);
    const { clock, ...rest } = options;
    const o = { ...AUTOSCALING_ADVISOR_DEFAULTS, ...rest };
    for (const key of ['highLatencyMillis', 'lowLatencyMillis', 'highInflight', 'lowInflight', 'scaleUpCooldownMillis', 'scaleDownCooldownMillis'] as const) {
      requireNonNegative(key, o[key]);
    }
    requirePercent('highCpuPercent', o.highCpuPercent);
    requirePercent('lowCpuPercent', o.lowCpuPercent);
    requireInteger('scaleUpStep', o.scaleUpStep, 1);
    requireInteger('scaleDownStep', o.scaleDownStep, 1);
    requireInteger('minInstances', o.minInstances, 0);
    requireInteger('maxInstances', o.maxInstances, 1);
    if (o.maxInstances < o.minInstances) throw new ConfigError('maxInstances', 'must be >= minInstances');
    if (o.lowLatencyMillis > o.highLatencyMillis) throw new ConfigError('lowLatencyMillis', 'must be <= highLatencyMillis');
    this.#o = Object.freeze(o);
    this.#clock = clock ?? systemClock;
  }

  /** Advice for the current statistics. A scale advice starts the cooldowns. */
  advise(stats: BalancerStats): ScalingAdvice {
    const o = this.#o;
    const n = stats.totalInstances;
    const now = this.#clock.monotonicNow();
    const hold = (reasons: string[]): ScalingAdvice => ({ action: 'hold', currentInstances: n, targetInstances: n, reasons });
    const scale = (action: 'scale-up' | 'scale-down', target: number, reasons: string[]): ScalingAdvice => {
      this.#lastScalingMillis = now;
      return { action, currentInstances: n, targetInstances: target, reasons };
    };

    if (n < o.minInstances) return scale('scale-up', o.minInstances, [`${n} instances, below minInstances ${o.minInstances}`]);
    if (n > o.maxInstances) return scale('scale-down', o.maxInstances, [`${n} instances, above maxInstances ${o.maxInstances}`]);
    // As in the original design: while some instances are unhealthy the figures mislead; wait.
    if (stats.unhealthyInstances > 0 || stats.ejectedInstances > 0) {
      return hold([`${stats.unhealthyInstances} unhealthy and ${stats.ejectedInstances} ejected instances; waiting for them to recover`]);
    }
    const latency = stats.averageLatencyMillis;
    const cpus = stats.instances.flatMap((i) => (i.metadata.cpuUsageRatio === undefined ? [] : [i.metadata.cpuUsageRatio * 100]));
    const cpu = cpus.length === 0 ? undefined : cpus.reduce((a, b) => a + b, 0) / cpus.length;

    const up: string[] = [];
    if (latency !== undefined && latency > o.highLatencyMillis) up.push(`mean latency ${latency.toFixed(0)} ms > ${o.highLatencyMillis} ms`);
    if (stats.inflight > o.highInflight) up.push(`${stats.inflight} calls in flight > ${o.highInflight}`);
    if (cpu !== undefined && cpu > o.highCpuPercent) up.push(`mean CPU ${cpu.toFixed(0)}% > ${o.highCpuPercent}%`);
    if (up.length > 0) {
      if (n >= o.maxInstances) return hold([...up, `already at maxInstances ${o.maxInstances}`]);
      if (now - this.#lastScalingMillis < o.scaleUpCooldownMillis) return hold([...up, 'scale-up cooldown']);
      return scale('scale-up', Math.min(o.maxInstances, n + o.scaleUpStep), up);
    }

    const lowLatency = latency === undefined || latency < o.lowLatencyMillis;
    const lowInflight = stats.inflight < o.lowInflight;
    const lowCpu = cpu === undefined || cpu < o.lowCpuPercent;
    if (lowLatency && lowInflight && lowCpu && n > o.minInstances) {
      const down = [
        `mean latency ${latency === undefined ? 'n/a' : `${latency.toFixed(0)} ms`} < ${o.lowLatencyMillis} ms`,
        `${stats.inflight} calls in flight < ${o.lowInflight}`,
        ...(cpu === undefined ? [] : [`mean CPU ${cpu.toFixed(0)}% < ${o.lowCpuPercent}%`]),
      ];
      if (now - this.#lastScalingMillis < o.scaleDownCooldownMillis) return hold([...down, 'scale-down cooldown']);
      return scale('scale-down', Math.max(o.minInstances, n - o.scaleDownStep), down);
    }
    return hold(['load within thresholds']);
  }
}
