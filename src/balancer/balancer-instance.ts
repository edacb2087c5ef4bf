/**
 * What a balancer balances: an instance of a service (an HTTP server, or later a pg pool of one
 * replica). Nothing here knows about HTTP; `address` is opaque to the core.
 */

/** A capability value: a number, or text with a unit such as `'24GB'`, `'8'`, `'500m'`. */
export type CapabilityValue = number | string;

/** What an instance costs, can take and reports about itself. Every field is optional. */
export interface InstanceMetadata {
  /** Price of running the instance, in any currency unit per hour (cost-aware strategy). */
  readonly costPerHour?: number;
  /** How many calls it serves at once (`max_concurrent` of the original design). */
  readonly capacity?: number;
  /** Reported CPU usage, 0 to 1. */
  readonly cpuUsageRatio?: number;
  /** Reported memory usage, 0 to 1. */
  readonly memoryUsageRatio?: number;
  /** Reported GPU usage, 0 to 1; absent when the instance has no GPU. */
  readonly gpuUsageRatio?: number;
  /** What it offers, matched by requirements such as `gpu_memory >= 16GB`. */
  readonly capabilities?: Readonly<Record<string, CapabilityValue>>;
  /** Free-form labels (zone, tier, …), exported with the statistics. */
  readonly labels?: Readonly<Record<string, string>>;
}

/** How an instance is declared. */
export interface InstanceSpec {
  /** Unique id within a balancer. */
  readonly id: string;
  /** Where to reach it, e.g. `http://10.0.0.5:8080`; the core never parses it. */
  readonly address: string;
  /**
   * Relative share of traffic for weighted strategies.
   * @default 1
   */
  readonly weight?: number;
  /** Cost, capacity, reported usage and labels. */
  readonly metadata?: InstanceMetadata;
}

/** The view of an instance that strategies, callers and statistics see. */
export interface BalancedInstance {
  readonly id: string;
  readonly address: string;
  /** Configured weight. */
  readonly weight: number;
  /** Weight scaled down while the instance warms up (slow start); what weighted strategies use. */
  readonly effectiveWeight: number;
  readonly metadata: InstanceMetadata;
  /** Calls picked for this instance and not yet released. */
  readonly inflight: number;
  /** Exponentially weighted mean latency of completed calls in ms (time constant 10 s); `undefined` before the first. */
  readonly latencyEwmaMillis: number | undefined;
  /**
   * Time since the oldest call in flight started, in ms (0 when none is). Response-time strategies
   * count it as latency, so an instance that stopped answering stops attracting calls before any
   * of them completes. Optional for views other than the balancer's (absent means 0).
   */
  readonly oldestInflightAgeMillis?: number;
}

/** A list that has at least one element; strategies are never asked to pick from nothing. */
export type NonEmptyArray<T> = readonly [T, ...T[]];

/** @internal `true` when the list has an element (and narrows it to a non-empty list). */
export function isNonEmpty<T>(list: readonly T[]): list is NonEmptyArray<T> {
  return list.length > 0;
}
