/**
 * The balancer: keeps the instances, filters those usable now (healthy, not ejected, panic mode),
 * asks the strategy to pick, counts calls in flight and learns from each outcome.
 */
import { systemClock, type Clock } from '../kernel/clock';
import { NoInstanceAvailableError, RequestTimeoutError } from './balancer-errors';
import { keepAliveWhile } from '../kernel/keep-alive';
import { TypedEmitter } from '../kernel/typed-emitter';
import type { BalancerEventMap } from './balancer-events';
import { isNonEmpty, type BalancedInstance, type InstanceMetadata, type InstanceSpec } from './balancer-instance';
import type { BalancerStats, InstanceStats } from './balancer-stats';

export { BALANCER_DEFAULTS, type BalancerOptions } from './balancer-options';
import type { PickRequest, Strategy } from './balancer-strategy';
import { requireNonNegative, requirePercent, requirePositive } from '../kernel/validate';
import { BALANCER_DEFAULTS, checkBalancerOptions, validateMetadata, validateSpec, type BalancerOptions } from './balancer-options';
import { requireClock, requireStrategy } from './balancer-option-checks';
import { InstanceRecord } from './balancer-record';
import { OutlierEjector } from './outlier-ejection';
import { SlowStart } from './slow-start';
import { peakEwma } from './strategies/peak-ewma';
import { observeBalancedCall, trackBalancer } from './balancer-telemetry';
import { ConfigError } from '../kernel/errors';

/** A pick to `release()` exactly once (later calls are ignored). */
export interface Lease {
  readonly instance: BalancedInstance;
  /** Records the outcome and frees the slot; the latency is measured by the balancer's clock. */
  release(ok: boolean): void;
  /**
   * Frees the slot without judging the instance (the caller gave up, e.g. its client went away):
   * counted as cancelled, not charged to ejection or to the strategy's latency estimate.
   */
  cancel(): void;
}

/** A pick request that may also exclude instances (those a retry already tried). */
export interface AcquireRequest extends PickRequest {
  readonly exclude?: ReadonlySet<string>;
}

/** Options of one `run()` call. */
export interface RunOptions<T> extends AcquireRequest {
  /** Overrides the balancer's `timeoutMillis`. */
  readonly timeoutMillis?: number;
  /** Classifies a resolved value as a failure (e.g. an HTTP 5xx) for ejection and latency. */
  readonly isFailure?: (value: T) => boolean;
  /**
   * Aborts the call: `run()` rejects at once with the signal's reason, the signal given to `fn`
   * aborts too, and the call is counted as cancelled (not a failure of the instance).
   */
  readonly signal?: AbortSignal;
}

/** How a call ended: judged good or bad, or abandoned by the caller (not the instance's fault). */
type CallResult = 'success' | 'failure' | 'cancelled';

/** Read through a call so TypeScript does not narrow `aborted` across awaits. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

/**
 * Balances calls across instances with a pluggable {@link Strategy}.
 *
 * ```ts
 * const balancer = new Balancer({ instances: [{ id: 'a', address: 'http://10.0.0.1:8080' }] });
 * const body = await balancer.run((instance, signal) => fetch(instance.address, { signal }).then((r) => r.text()));
 * ```
 */
export class Balancer extends TypedEmitter<BalancerEventMap> {
  readonly strategy: Strategy;
  readonly clock: Clock;
  readonly #timeoutMillis: number;
  readonly #ejector: OutlierEjector | undefined;
  readonly #slowStart: SlowStart | undefined;
  readonly #panicThresholdPercent: number;
  readonly #latencyDecayTimeMillis: number;
  readonly #records = new Map<string, InstanceRecord>();
  #panic = false;
  #noInstanceErrors = 0;

  constructor(balancerOptions: BalancerOptions = {}) {
    super();
    const options = checkBalancerOptions(balancerOptions);
    this.clock = options.clock === undefined ? systemClock : requireClock('clock', options.clock);
    this.strategy = options.strategy === undefined ? peakEwma({ clock: this.clock }) : requireStrategy('strategy', options.strategy);
    this.#timeoutMillis = requireNonNegative('timeoutMillis', options.timeoutMillis ?? BALANCER_DEFAULTS.timeoutMillis);
    this.#ejector = options.outlierEjection === false ? undefined : new OutlierEjector(options.outlierEjection ?? {});
    this.#slowStart = options.slowStart === false ? undefined : new SlowStart(options.slowStart ?? {});
    this.#panicThresholdPercent = requirePercent(
      'panicThresholdPercent',
      options.panicThresholdPercent ?? BALANCER_DEFAULTS.panicThresholdPercent,
    );
    this.#latencyDecayTimeMillis = requirePositive(
      'latencyDecayTimeMillis',
      options.latencyDecayTimeMillis ?? BALANCER_DEFAULTS.latencyDecayTimeMillis,
    );
    for (const spec of options.instances ?? []) this.#add(spec, undefined);
    trackBalancer(this);
  }

  /** Adds an instance at run time; it slow-starts. Throws if the id is taken. */
  addInstance(spec: InstanceSpec): BalancedInstance {
    const record = this.#add(spec, this.clock.monotonicNow());
    this.emit('instance-added', { instanceId: spec.id });
    return record;
  }

  #add(spec: InstanceSpec, warmingSinceMillis: number | undefined): InstanceRecord {
    validateSpec(spec);
    if (this.#records.has(spec.id)) throw new ConfigError('instances[].id', `duplicate instance id \`${spec.id}\``);
    const record = new InstanceRecord(spec, warmingSinceMillis, this.clock);
    this.#records.set(spec.id, record);
    return record;
  }

  /** Removes an instance; calls in flight to it finish normally. Returns `false` if unknown. */
  removeInstance(id: string): boolean {
    if (!this.#records.delete(id)) return false;
    this.#ejector?.remove(id);
    this.strategy.onRemove?.(id);
    this.emit('instance-removed', { instanceId: id });
    // Fewer instances lower the cap on ejections: return the earliest-ending ones above it.
    if (this.#ejector !== undefined) {
      const now = this.clock.monotonicNow();
      this.#returned(this.#ejector.enforceCap(this.#records.size, now), now);
    }
    return true;
  }

  /** The instances, in the order they were added. */
  instances(): readonly BalancedInstance[] {
    return [...this.#records.values()];
  }

  /** One instance by id. */
  instance(id: string): BalancedInstance | undefined {
    return this.#records.get(id);
  }

  /** Sets active health (from a health checker). A recovering instance slow-starts. */
  setHealth(id: string, healthy: boolean, reason?: string): void {
    const r = this.#records.get(id);
    if (r === undefined || r.healthy === healthy) return;
    r.healthy = healthy;
    if (healthy) this.#backInService(r, this.clock.monotonicNow());
    this.emit('health-changed', reason === undefined ? { instanceId: id, healthy } : { instanceId: id, healthy, reason });
  }

  /** Active health of an instance (`undefined` when unknown). */
  isHealthy(id: string): boolean | undefined {
    return this.#records.get(id)?.healthy;
  }

  /** `true` while the instance is ejected after consecutive failures. */
  isEjected(id: string): boolean {
    this.#releaseEjections();
    return this.#ejector?.isEjected(id) ?? false;
  }

  /** Replaces reported usage or other metadata fields (cpu, memory, gpu, capacity, cost). */
  reportUsage(id: string, update: Partial<InstanceMetadata>): void {
    validateMetadata(`reportUsage(${id})`, update);
    const r = this.#records.get(id);
    if (r !== undefined) r.metadata = Object.freeze({ ...r.metadata, ...update });
  }

  #releaseEjections(): void {
    if (this.#ejector === undefined) return;
    const now = this.clock.monotonicNow();
    this.#returned(this.#ejector.release(now), now);
  }

  #returned(ids: readonly string[], now: number): void {
    for (const id of ids) {
      const r = this.#records.get(id);
      if (r !== undefined) this.#backInService(r, now);
      this.emit('returned', { instanceId: id });
    }
  }

  /**
   * An instance back after an ejection or failed health checks warms up again, and the strategy
   * forgets what its failures taught (they say nothing about the recovered instance).
   */
  #backInService(r: InstanceRecord, now: number): void {
    r.warmingSinceMillis = now;
    r.slowStartCredit = 0;
    this.strategy.onReturn?.(r.id);
  }


  #candidates(exclude: ReadonlySet<string> | undefined): InstanceRecord[] {
    this.#releaseEjections();
    const now = this.clock.monotonicNow();
    let total = 0;
    let usableCount = 0;
    const all: InstanceRecord[] = [];
    const usable: InstanceRecord[] = [];
    for (const r of this.#records.values()) {
      if (r.warmingSinceMillis !== undefined && this.#slowStart !== undefined) {
        r.effectiveWeight = r.weight * this.#slowStart.factor(r.warmingSinceMillis, now);
        if (this.#slowStart.isWarm(r.warmingSinceMillis, now)) r.warmingSinceMillis = undefined;
      } else {
        r.effectiveWeight = r.weight;
      }
      const isUsable = r.healthy && this.#ejector?.isEjected(r.id) !== true;
      total++;
      if (isUsable) usableCount++;
      // Panic is decided over every instance; a retry's exclusions only narrow the choice after.
      if (exclude?.has(r.id) === true) continue;
      all.push(r);
      if (isUsable) usable.push(r);
    }
    const panic = total > 0 && (usableCount === 0 || (usableCount * 100) / total < this.#panicThresholdPercent);
    if (panic !== this.#panic) {
      this.#panic = panic;
      this.emit('panic', { active: panic, usable: usableCount, total });
    }
    const candidates = panic ? all : usable;
    return this.#slowStart === undefined ? candidates : this.#slowStart.admit(candidates);
  }

  /** Picks an instance and counts it in flight. Release the lease exactly once (later calls are ignored). */
  acquire(request: AcquireRequest = {}): Lease {
    const record = this.#pick(request);
    const call = record.begin();
    let released = false;
    return {
      instance: record,
      release: (ok: boolean) => {
        if (released) return;
        released = true;
        this.#complete(record, call, ok ? 'success' : 'failure', undefined);
      },
      cancel: () => {
        if (released) return;
        released = true;
        this.#complete(record, call, 'cancelled', undefined);
      },
    };
  }

  #pick(request: AcquireRequest): InstanceRecord {
    const candidates = this.#candidates(request.exclude);
    if (!isNonEmpty(candidates)) {
      this.#noInstanceErrors++;
      throw new NoInstanceAvailableError(
        this.#records.size === 0
          ? 'The balancer has no instances; add one with `addInstance`'
          : `Every instance was excluded (${this.#records.size} tried)`,
        { instances: this.#records.size },
      );
    }
    let record: InstanceRecord;
    try {
      record = this.strategy.pick(candidates, request) as InstanceRecord;
    } catch (error) {
      this.#noInstanceErrors++;
      throw error;
    }
    this.#slowStart?.picked(record);
    return record;
  }

  #complete(r: InstanceRecord, call: number, outcome: CallResult, timeoutMillis: number | undefined): void {
    const latencyMillis = r.end(call);
    if (outcome === 'cancelled') {
      r.cancelledRequests++;
      return;
    }
    const ok = outcome === 'success';
    const now = this.clock.monotonicNow();
    r.recordCall(ok, latencyMillis, now, this.#latencyDecayTimeMillis);
    // A removed instance (or one removed and re-added under the same id) teaches nothing: its
    // strategy and ejection state are gone and must not be re-created by a late completion.
    if (this.#records.get(r.id) !== r) return;
    this.strategy.onComplete?.(r, timeoutMillis === undefined ? { latencyMillis, ok } : { latencyMillis, ok, timeoutMillis });
    if (this.#ejector !== undefined) {
      // Ejections that ended must not count against the cap on ejections.
      this.#releaseEjections();
      const ejection = this.#ejector.record(r.id, ok, now, this.#records.size);
      if (ejection !== undefined) this.emit('ejected', ejection);
    }
  }

  /**
   * Runs `fn` on a picked instance: counts it in flight, times it, applies the timeout and always
   * releases it, whether `fn` resolves, throws or times out.
   */
  async run<T>(fn: (instance: BalancedInstance, signal: AbortSignal) => Promise<T> | T, options: RunOptions<T> = {}): Promise<T> {
    const timeoutMillis = requireNonNegative('timeoutMillis', options.timeoutMillis ?? this.#timeoutMillis);
    const callerSignal = options.signal;
    if (callerSignal?.aborted === true) throw abortReason(callerSignal);
    const record = this.#pick(options);
    const call = record.begin();
    const observed = observeBalancedCall(this, record.id, options.exclude?.size ?? 0);
    const controller = new AbortController();
    let cancelTimer: (() => void) | undefined;
    let onAbort: (() => void) | undefined;
    let outcome: CallResult = 'failure';
    try {
      const work = Promise.resolve().then(() => fn(record, controller.signal));
      const settled = new Promise<T>((resolve, reject) => {
        if (timeoutMillis !== 0) {
          cancelTimer = this.clock.setTimeout(() => {
            const error = new RequestTimeoutError(record.id, timeoutMillis);
            controller.abort(error);
            reject(error);
          }, timeoutMillis);
        }
        if (callerSignal !== undefined) {
          // The caller gave up: settle now (even if fn ignores its signal) and free the slot.
          onAbort = () => {
            outcome = 'cancelled';
            const reason = abortReason(callerSignal);
            controller.abort(reason);
            reject(reason);
          };
          callerSignal.addEventListener('abort', onAbort, { once: true });
        }
        work.then(resolve, reject);
      });
      // The clock's timers never keep the process alive; a deadline the caller awaits must, or a
      // script whose fn waits on nothing that holds the event loop exits (code 13) instead of timing out.
      const value = await (timeoutMillis !== 0 ? keepAliveWhile(settled) : settled);
      outcome = options.isFailure?.(value) === true ? 'failure' : 'success';
      return value;
    } catch (error) {
      if (isAborted(callerSignal)) outcome = 'cancelled';
      throw error;
    } finally {
      cancelTimer?.();
      if (onAbort !== undefined) callerSignal?.removeEventListener('abort', onAbort);
      this.#complete(record, call, outcome, timeoutMillis === 0 ? undefined : timeoutMillis);
      observed.end(outcome);
    }
  }

  /** A snapshot of the statistics (the original design's `get_load_balancing_stats`). */
  stats(): BalancerStats {
    this.#releaseEjections();
    const instances: InstanceStats[] = [];
    let totalRequests = 0;
    let failedRequests = 0;
    let inflight = 0;
    let latencySum = 0;
    let latencyCount = 0;
    let healthy = 0;
    let ejected = 0;
    for (const r of this.#records.values()) {
      const isEjected = this.#ejector?.isEjected(r.id) ?? false;
      totalRequests += r.totalRequests;
      failedRequests += r.failedRequests;
      inflight += r.inflight;
      if (r.latencyEwmaMillis !== undefined) {
        latencySum += r.latencyEwmaMillis;
        latencyCount++;
      }
      if (r.healthy) healthy++;
      if (isEjected) ejected++;
      instances.push(r.stats(isEjected, this.#ejector?.ejectedUntil(r.id)));
    }
    return {
      strategy: this.strategy.name,
      totalInstances: this.#records.size,
      healthyInstances: healthy,
      unhealthyInstances: this.#records.size - healthy,
      ejectedInstances: ejected,
      panic: this.#panic,
      totalRequests,
      failedRequests,
      noInstanceErrors: this.#noInstanceErrors,
      inflight,
      averageLatencyMillis: latencyCount === 0 ? undefined : latencySum / latencyCount,
      instances,
    };
  }
}
