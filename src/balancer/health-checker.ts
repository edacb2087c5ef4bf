/**
 * Active health checks: probe every instance on an interval; `fall` failures in a row mark it
 * unhealthy, `rise` successes in a row mark it healthy again (HAProxy's rise/fall). Driven by an
 * injected clock, so tests advance time instead of sleeping.
 */
import { systemClock, type Clock } from '../kernel/clock';
import { TypedEmitter } from '../kernel/typed-emitter';
import type { BalancedInstance } from './balancer-instance';
import { requireInteger, requirePositive } from '../kernel/validate';
import { ConfigError } from '../kernel/errors';
import { requireClock, requireOptions } from './balancer-option-checks';

/** Answers whether an instance is healthy; should honour `signal` (aborted at the timeout). */
export type HealthProbe = (instance: BalancedInstance, signal: AbortSignal) => Promise<boolean>;

/** What the checker needs from a balancer. */
export interface HealthTarget {
  instances(): readonly BalancedInstance[];
  isHealthy(id: string): boolean | undefined;
  setHealth(id: string, healthy: boolean, reason?: string): void;
}

/** Options of {@link HealthChecker}. */
export interface HealthCheckOptions {
  /**
   * Time between two checks of an instance, in ms.
   * @default 2000
   */
  readonly intervalMillis?: number;
  /**
   * A probe slower than this, in ms, counts as failed.
   * @default 1000
   */
  readonly timeoutMillis?: number;
  /**
   * Consecutive successes that bring an unhealthy instance back.
   * @default 2
   */
  readonly rise?: number;
  /**
   * Consecutive failures that mark a healthy instance unhealthy.
   * @default 3
   */
  readonly fall?: number;
  /**
   * How to probe: `httpHealthProbe()` from `kysely-scale/balancer` for HTTP services (GET /health,
   * healthy on 2xx), or any function. Required, so the core never loads an HTTP client it may not use.
   */
  readonly probe: HealthProbe;
  /**
   * Source of time and timers.
   * @default systemClock
   */
  readonly clock?: Clock;
}

/** Defaults of {@link HealthCheckOptions}. */
export const HEALTH_CHECK_DEFAULTS = Object.freeze({ intervalMillis: 2_000, timeoutMillis: 1_000, rise: 2, fall: 3 });

const HEALTH_CHECK_OPTIONS_KEYS: Readonly<Record<keyof HealthCheckOptions, true>> = {
  intervalMillis: true,
  timeoutMillis: true,
  rise: true,
  fall: true,
  probe: true,
  clock: true,
};

/** Health state of one instance as the checker sees it. */
export interface HealthState {
  readonly healthy: boolean;
  readonly consecutiveSuccesses: number;
  readonly consecutiveFailures: number;
}

/** Events of a {@link HealthChecker}. */
export interface HealthCheckerEventMap {
  /** One probe finished. */
  check: { readonly instanceId: string; readonly ok: boolean; readonly healthy: boolean };
}

interface MutableHealthState {
  healthy: boolean;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
}

/** Probes the instances of a balancer and sets their health. */
export class HealthChecker extends TypedEmitter<HealthCheckerEventMap> {
  readonly #target: HealthTarget;
  readonly #intervalMillis: number;
  readonly #timeoutMillis: number;
  readonly #rise: number;
  readonly #fall: number;
  readonly #probe: HealthProbe;
  readonly #clock: Clock;
  readonly #states = new Map<string, MutableHealthState>();
  readonly #running = new Map<string, Promise<void>>();
  /** Aborts the probes running now (their timers and requests), on `stop()`. */
  readonly #inFlight = new Set<() => void>();
  #cancel: (() => void) | undefined;
  /** Bumped by `stop()`: results of probes started before it are discarded. */
  #generation = 0;

  constructor(target: HealthTarget, options: HealthCheckOptions) {
    super();
    requireOptions('', options, HEALTH_CHECK_OPTIONS_KEYS);
    for (const method of ['instances', 'isHealthy', 'setHealth'] as const) {
      if (typeof target?.[method] !== 'function') throw new ConfigError('target', `must be a balancer (or a HealthTarget with instances(), isHealthy(), setHealth()); it has no ${method}()`);
    }
    this.#target = target;
    this.#intervalMillis = requirePositive('intervalMillis', options.intervalMillis ?? HEALTH_CHECK_DEFAULTS.intervalMillis);
    this.#timeoutMillis = requirePositive('timeoutMillis', options.timeoutMillis ?? HEALTH_CHECK_DEFAULTS.timeoutMillis);
    this.#rise = requireInteger('rise', options.rise ?? HEALTH_CHECK_DEFAULTS.rise, 1);
    this.#fall = requireInteger('fall', options.fall ?? HEALTH_CHECK_DEFAULTS.fall, 1);
    if (typeof options?.probe !== 'function') throw new ConfigError('probe', 'must be a function (instance, signal) => Promise<boolean>, e.g. httpHealthProbe()');
    this.#probe = options.probe;
    this.#clock = options.clock === undefined ? systemClock : requireClock('clock', options.clock);
  }

  /** Checks every instance now, then every `intervalMillis` until `stop()`. */
  start(): void {
    if (this.#cancel !== undefined) return;
    const tick = (): void => {
      this.#cancel = this.#clock.setTimeout(tick, this.#intervalMillis);
      void this.checkNow();
    };
    tick();
  }

  /**
   * Stops scheduling checks and aborts the probes running now (their timeout timers are cleared
   * and their results discarded), so nothing of the checker stays alive after it.
   */
  stop(): void {
    this.#cancel?.();
    this.#cancel = undefined;
    this.#generation++;
    for (const abort of [...this.#inFlight]) abort();
  }

  /** Probes every instance once (skipping those whose last probe is still running). */
  checkNow(): Promise<void> {
    const ids = new Set<string>();
    for (const instance of this.#target.instances()) {
      ids.add(instance.id);
      if (this.#running.has(instance.id)) continue;
      const run = this.#checkOne(instance).finally(() => this.#running.delete(instance.id));
      this.#running.set(instance.id, run);
    }
    for (const id of this.#states.keys()) if (!ids.has(id)) this.#states.delete(id);
    return this.idle();
  }

  /** Resolves when no probe is running. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all(this.#running.values());
  }

  /** The checker's view of an instance. */
  state(id: string): HealthState | undefined {
    const s = this.#states.get(id);
    return s === undefined ? undefined : { ...s };
  }

  async #checkOne(instance: BalancedInstance): Promise<void> {
    const generation = this.#generation;
    const controller = new AbortController();
    let timedOut = false;
    let settle!: (healthy: boolean) => void;
    const ok = await new Promise<boolean>((resolve) => {
      const cancel = this.#clock.setTimeout(() => {
        timedOut = true;
        controller.abort();
        settle(false);
      }, this.#timeoutMillis);
      const abort = (): void => {
        controller.abort();
        settle(false);
      };
      settle = (healthy) => {
        cancel();
        this.#inFlight.delete(abort);
        resolve(healthy);
      };
      this.#inFlight.add(abort);
      let probe: Promise<boolean>;
      try {
        probe = Promise.resolve(this.#probe(instance, controller.signal));
      } catch {
        probe = Promise.resolve(false);
      }
      probe.then(
        (healthy) => settle(healthy === true),
        () => settle(false),
      );
    });
    if (generation !== this.#generation) return;
    this.#record(instance.id, ok, timedOut ? 'health check timed out' : 'health check failed');
  }

  #record(id: string, ok: boolean, failureReason: string): void {
    if (!this.#target.instances().some((i) => i.id === id)) return;
    let s = this.#states.get(id);
    if (s === undefined) {
      s = { healthy: this.#target.isHealthy(id) ?? true, consecutiveSuccesses: 0, consecutiveFailures: 0 };
      this.#states.set(id, s);
    }
    if (ok) {
      s.consecutiveSuccesses++;
      s.consecutiveFailures = 0;
      if (!s.healthy && s.consecutiveSuccesses >= this.#rise) {
        s.healthy = true;
        this.#target.setHealth(id, true, `${this.#rise} health checks passed`);
      }
    } else {
      s.consecutiveFailures++;
      s.consecutiveSuccesses = 0;
      if (s.healthy && s.consecutiveFailures >= this.#fall) {
        s.healthy = false;
        this.#target.setHealth(id, false, `${failureReason} ${this.#fall} times in a row`);
      }
    }
    this.emit('check', { instanceId: id, ok, healthy: s.healthy });
  }
}
