/**
 * What the balancer keeps per instance: the view strategies read (`BalancedInstance`) plus its
 * counters, health and warm-up state. Internal: users see it through `BalancedInstance` and stats.
 */
import type { Clock } from '../kernel/clock';
import { redactAddress } from '../kernel/redact';
import type { BalancedInstance, InstanceMetadata, InstanceSpec } from './balancer-instance';
import type { InstanceStats } from './balancer-stats';
import { LatencyHistogram } from './latency-histogram';

/** @internal One instance as the balancer tracks it. */
export class InstanceRecord implements BalancedInstance {
  readonly id: string;
  readonly address: string;
  readonly weight: number;
  metadata: InstanceMetadata;
  effectiveWeight: number;
  inflight = 0;
  latencyEwmaMillis: number | undefined = undefined;
  latencyStampMillis = 0;
  healthy = true;
  warmingSinceMillis: number | undefined;
  /** Picks a warming instance may take now (see `SlowStart.admit`). */
  slowStartCredit = 0;
  totalRequests = 0;
  failedRequests = 0;
  cancelledRequests = 0;
  readonly histogram = new LatencyHistogram();
  readonly #clock: Clock;
  /** Start time of each call in flight, by call number; insertion order is start order. */
  readonly #starts = new Map<number, number>();
  #nextCall = 0;

  constructor(spec: InstanceSpec, warmingSinceMillis: number | undefined, clock: Clock) {
    this.#clock = clock;
    this.id = spec.id;
    this.address = spec.address;
    this.weight = spec.weight ?? 1;
    this.effectiveWeight = this.weight;
    this.metadata = Object.freeze({ ...(spec.metadata ?? {}) });
    this.warmingSinceMillis = warmingSinceMillis;
  }

  /** Time since the oldest call in flight started, in ms; 0 when none is in flight. */
  get oldestInflightAgeMillis(): number {
    for (const start of this.#starts.values()) return Math.max(0, this.#clock.monotonicNow() - start);
    return 0;
  }

  /** Counts a call in flight from now; returns its number for {@link end}. */
  begin(): number {
    const call = this.#nextCall++;
    this.#starts.set(call, this.#clock.monotonicNow());
    this.inflight++;
    return call;
  }

  /** Ends a call begun with {@link begin}; returns its latency in ms. */
  end(call: number): number {
    const start = this.#starts.get(call) ?? this.#clock.monotonicNow();
    this.#starts.delete(call);
    this.inflight = Math.max(0, this.inflight - 1);
    return this.#clock.monotonicNow() - start;
  }

  /** Counts a finished call and moves the latency EWMA (time constant `decayTimeMillis`). */
  recordCall(ok: boolean, latencyMillis: number, nowMillis: number, decayTimeMillis: number): void {
    this.totalRequests++;
    if (!ok) this.failedRequests++;
    this.histogram.record(latencyMillis);
    if (this.latencyEwmaMillis === undefined) {
      this.latencyEwmaMillis = latencyMillis;
    } else {
      const w = Math.exp(-Math.max(0, nowMillis - this.latencyStampMillis) / decayTimeMillis);
      this.latencyEwmaMillis = this.latencyEwmaMillis * w + latencyMillis * (1 - w);
    }
    this.latencyStampMillis = nowMillis;
  }

  /** The statistics of this instance; the address is shown with its password replaced by `***`. */
  stats(ejected: boolean, ejectedUntilMillis: number | undefined): InstanceStats {
    return {
      id: this.id,
      address: redactAddress(this.address),
      weight: this.weight,
      effectiveWeight: this.effectiveWeight,
      inflight: this.inflight,
      totalRequests: this.totalRequests,
      failedRequests: this.failedRequests,
      cancelledRequests: this.cancelledRequests,
      errorRate: this.totalRequests === 0 ? 0 : this.failedRequests / this.totalRequests,
      latencyEwmaMillis: this.latencyEwmaMillis,
      latencyP50Millis: this.histogram.quantile(0.5),
      latencyP99Millis: this.histogram.quantile(0.99),
      latencySumMillis: this.histogram.sumMillis,
      healthy: this.healthy,
      ejected,
      ejectedUntilMillis,
      metadata: this.metadata,
    };
  }
}
