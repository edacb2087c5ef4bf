/**
 * The balancer's options, their defaults and their validation: every option is checked at
 * construction with an error that names it, so a typo fails at start rather than at the first call.
 */
import type { Clock } from '../kernel/clock';
import { ConfigError } from '../kernel/errors';
import { requireNonNegative, requirePositive, requireRatio } from '../kernel/validate';
import { requireOptions } from './balancer-option-checks';
import type { InstanceMetadata, InstanceSpec } from './balancer-instance';
import type { Strategy } from './balancer-strategy';
import type { OutlierEjectionOptions } from './outlier-ejection';
import type { SlowStartOptions } from './slow-start';

/** Options of {@link Balancer}. */
export interface BalancerOptions {
  /**
   * How to pick among usable instances.
   * @default peakEwma({ clock })
   */
  readonly strategy?: Strategy;
  /**
   * Instances to start with; more can be added with `addInstance`. These do not slow-start.
   * @default []
   */
  readonly instances?: readonly InstanceSpec[];
  /**
   * Source of time for latencies, timeouts, ejections and slow start.
   * @default systemClock
   */
  readonly clock?: Clock;
  /**
   * Deadline of a `run()` call (and of each attempt of the balanced fetch), in ms; a call may
   * override it, and 0 turns it off. A call that times out rejects with `RequestTimeoutError` and
   * is charged to its instance as a failure, so an instance that stops answering is ejected.
   * @default 30000
   */
  readonly timeoutMillis?: number;
  /**
   * Passive ejection after consecutive failures, or `false` for none.
   * @default OUTLIER_EJECTION_DEFAULTS
   */
  readonly outlierEjection?: OutlierEjectionOptions | false;
  /**
   * Warm-up of new and recovered instances, or `false` for none.
   * @default SLOW_START_DEFAULTS
   */
  readonly slowStart?: SlowStartOptions | false;
  /**
   * Panic mode: when the usable share of instances is below this percent, or none is usable,
   * every instance is used regardless of health (the original design: "no healthy instance, try
   * all"). 0 panics only when none is usable; Envoy uses 50.
   * @default 0
   */
  readonly panicThresholdPercent?: number;
  /**
   * Time constant of each instance's latency EWMA (`latencyEwmaMillis`), in ms.
   * @default 10000
   */
  readonly latencyDecayTimeMillis?: number;
}

/** Defaults of {@link BalancerOptions}. */
export const BALANCER_DEFAULTS = Object.freeze({
  timeoutMillis: 30_000,
  panicThresholdPercent: 0,
  latencyDecayTimeMillis: 10_000,
});

/** Every key of {@link BalancerOptions}: a new option without an entry here does not compile. */
const BALANCER_OPTION_KEYS: Readonly<Record<keyof BalancerOptions, true>> = {
  strategy: true,
  instances: true,
  clock: true,
  timeoutMillis: true,
  outlierEjection: true,
  slowStart: true,
  panicThresholdPercent: true,
  latencyDecayTimeMillis: true,
};

const SPEC_KEYS: Readonly<Record<keyof InstanceSpec, true>> = { id: true, address: true, weight: true, metadata: true };

const METADATA_KEYS: Readonly<Record<keyof InstanceMetadata, true>> = {
  costPerHour: true,
  capacity: true,
  cpuUsageRatio: true,
  memoryUsageRatio: true,
  gpuUsageRatio: true,
  capabilities: true,
  labels: true,
};

/** @internal Checks the options bag of a balancer: an object with known keys and a list of instances. */
export function checkBalancerOptions(options: BalancerOptions | undefined): BalancerOptions {
  const o = requireOptions('', options, BALANCER_OPTION_KEYS);
  if (o.instances !== undefined && !Array.isArray(o.instances)) {
    throw new ConfigError('instances', `must be an array of instance specs, got ${o.instances === null ? 'null' : typeof o.instances}`);
  }
  return o;
}

/** @internal Validates instance metadata (a spec's, or a usage report), naming the field. */
export function validateMetadata(where: string, metadata: Partial<InstanceMetadata>): void {
  requireOptions(where, metadata, METADATA_KEYS);
  if (metadata.capacity !== undefined) requirePositive(`${where}.capacity`, metadata.capacity);
  if (metadata.costPerHour !== undefined) requireNonNegative(`${where}.costPerHour`, metadata.costPerHour);
  for (const field of ['cpuUsageRatio', 'memoryUsageRatio', 'gpuUsageRatio'] as const) {
    const value = metadata[field];
    if (value !== undefined) requireRatio(`${where}.${field}`, value);
  }
}

/** @internal Validates an instance spec, naming the field. */
export function validateSpec(spec: InstanceSpec): void {
  if (spec === null || typeof spec !== 'object') throw new ConfigError('instances[]', `must be an object { id, address }, got ${spec === null ? 'null' : typeof spec}`);
  if (typeof spec.id !== 'string' || spec.id === '') throw new ConfigError('instances[].id', 'must be a non-empty string');
  requireOptions(`instances[${spec.id}]`, spec, SPEC_KEYS);
  if (typeof spec.address !== 'string') throw new ConfigError('instances[].address', 'must be a string', { id: spec.id });
  if (spec.weight !== undefined) requirePositive(`instances[${spec.id}].weight`, spec.weight);
  if (spec.metadata !== undefined) validateMetadata(`instances[${spec.id}].metadata`, spec.metadata);
}
