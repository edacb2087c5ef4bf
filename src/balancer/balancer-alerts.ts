/**
 * Alerts from the original design (unhealthy instances, load imbalance, high latency), raised and
 * resolved as events: an alert fires once when its condition begins and once when it ends.
 */
import { systemClock, type Clock } from '../kernel/clock';
import { TypedEmitter } from '../kernel/typed-emitter';
import { requireOptions } from './balancer-option-checks';
import type { BalancerStats } from './balancer-stats';
import { requireNonNegative, requirePositive } from '../kernel/validate';

/** Kinds of alert. */
export type AlertKind = 'unhealthy-instances' | 'load-imbalance' | 'high-latency';

/** An alert transition. */
export interface Alert {
  readonly kind: AlertKind;
  readonly state: 'raised' | 'resolved';
  readonly message: string;
  /** The figure compared with the threshold. */
  readonly value: number;
  readonly atMillis: number;
}

/** Options of {@link AlertMonitor}. */
export interface AlertMonitorOptions {
  /** Mean latency above which `high-latency` is raised, in ms. @default 1000 */
  readonly highLatencyMillis?: number;
  /**
   * Coefficient of variation (std / mean) of calls per unit of weight across usable instances
   * since the last check, above which `load-imbalance` is raised. @default 0.5
   */
  readonly loadImbalanceRatio?: number;
  /** Fewest calls in a check period for the imbalance figure to count. @default 100 */
  readonly minRequestsForImbalance?: number;
  /** Time between checks after `start()`, in ms. @default 10000 */
  readonly intervalMillis?: number;
  /** Source of time and timers. @default systemClock */
  readonly clock?: Clock;
}

/** Defaults of {@link AlertMonitorOptions}. */
export const ALERT_MONITOR_DEFAULTS = Object.freeze({
  highLatencyMillis: 1_000,
  loadImbalanceRatio: 0.5,
  minRequestsForImbalance: 100,
  intervalMillis: 10_000,
});

interface Condition {
  readonly active: boolean;
  readonly value: number;
  readonly message: string;
}

const ALERT_MONITOR_OPTIONS_KEYS: Readonly<Record<keyof AlertMonitorOptions, true>> = {
  highLatencyMillis: true,
  loadImbalanceRatio: true,
  minRequestsForImbalance: true,
  intervalMillis: true,
  clock: true,
};

/** Watches a balancer's statistics and emits `alert` events. */
export class AlertMonitor extends TypedEmitter<{ alert: Alert }> {
  readonly #source: { stats(): BalancerStats };
  readonly #o: Readonly<Omit<Required<AlertMonitorOptions>, 'clock'>>;
  readonly #clock: Clock;
  readonly #active = new Set<AlertKind>();
  #lastTotals = new Map<string, number>();
  #cancel: (() => void) | undefined;

  constructor(source: { stats(): BalancerStats }, options: AlertMonitorOptions = {}) {
    super();
    requireOptions('', options, ALERT_MONITOR_OPTIONS_KEYS);
    const { clock, ...rest } = options;
    const o = { ...ALERT_MONITOR_DEFAULTS, ...rest };
    requireNonNegative('highLatencyMillis', o.highLatencyMillis);
    requireNonNegative('loadImbalanceRatio', o.loadImbalanceRatio);
    requireNonNegative('minRequestsForImbalance', o.minRequestsForImbalance);
    requirePositive('intervalMillis', o.intervalMillis);
    this.#o = Object.freeze(o);
    this.#source = source;
    this.#clock = clock ?? systemClock;
  }

  /** Alerts active now. */
  get active(): ReadonlySet<AlertKind> {
    return new Set(this.#active);
  }

  /** Evaluates every condition once; emits and returns the transitions. */
  check(): Alert[] {
    const stats = this.#source.stats();
    const conditions = this.#evaluate(stats);
    const now = this.#clock.monotonicNow();
    const transitions: Alert[] = [];
    for (const kind of Object.keys(conditions) as AlertKind[]) {
      const c = conditions[kind];
      if (c.active === this.#active.has(kind)) continue;
      if (c.active) this.#active.add(kind);
      else this.#active.delete(kind);
      const alert: Alert = { kind, state: c.active ? 'raised' : 'resolved', message: c.message, value: c.value, atMillis: now };
      transitions.push(alert);
      this.emit('alert', alert);
    }
    return transitions;
  }

  /** Checks every `intervalMillis` until `stop()`. */
  start(): void {
    if (this.#cancel !== undefined) return;
    const tick = (): void => {
      this.#cancel = this.#clock.setTimeout(tick, this.#o.intervalMillis);
      this.check();
    };
    this.#cancel = this.#clock.setTimeout(tick, this.#o.intervalMillis);
  }

  stop(): void {
    this.#cancel?.();
    this.#cancel = undefined;
  }

  #evaluate(stats: BalancerStats): Record<AlertKind, Condition> {
    const unhealthy = stats.unhealthyInstances + stats.ejectedInstances;
    const latency = stats.averageLatencyMillis ?? 0;
    // Calls per unit of weight since the last check, over usable instances that are not warming up
    // (slow start holds those below their share on purpose).
    const loads: number[] = [];
    let periodRequests = 0;
    const totals = new Map<string, number>();
    for (const i of stats.instances) {
      totals.set(i.id, i.totalRequests);
      const delta = i.totalRequests - (this.#lastTotals.get(i.id) ?? 0);
      periodRequests += delta;
      if (i.healthy && !i.ejected && i.effectiveWeight >= i.weight) loads.push(delta / i.weight);
    }
    this.#lastTotals = totals;
    let cv = 0;
    if (loads.length >= 2 && periodRequests >= this.#o.minRequestsForImbalance) {
      const mean = loads.reduce((a, b) => a + b, 0) / loads.length;
      const variance = loads.reduce((a, b) => a + (b - mean) ** 2, 0) / loads.length;
      cv = mean === 0 ? 0 : Math.sqrt(variance) / mean;
    }
    return {
      'unhealthy-instances': {
        active: unhealthy > 0,
        value: unhealthy,
        message: `${stats.unhealthyInstances} unhealthy and ${stats.ejectedInstances} ejected of ${stats.totalInstances} instances`,
      },
      'load-imbalance': {
        active: cv > this.#o.loadImbalanceRatio,
        value: cv,
        message: `load imbalance: coefficient of variation ${cv.toFixed(2)} (threshold ${this.#o.loadImbalanceRatio})`,
      },
      'high-latency': {
        active: latency > this.#o.highLatencyMillis,
        value: latency,
        message: `mean latency ${latency.toFixed(0)} ms (threshold ${this.#o.highLatencyMillis} ms)`,
      },
    };
  }
}
