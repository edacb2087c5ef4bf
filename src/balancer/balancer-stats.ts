/** Shapes of the balancer's statistics snapshot. */
import type { InstanceMetadata } from './balancer-instance';

/** Statistics of one instance. */
export interface InstanceStats {
  readonly id: string;
  /** The instance's address with any password replaced by `***`. */
  readonly address: string;
  readonly weight: number;
  readonly effectiveWeight: number;
  readonly inflight: number;
  /** Completed calls. */
  readonly totalRequests: number;
  readonly failedRequests: number;
  /** Calls the caller abandoned (aborted signal, client gone); not counted in `totalRequests`. */
  readonly cancelledRequests: number;
  /** `failedRequests / totalRequests`, 0 before any call. */
  readonly errorRate: number;
  readonly latencyEwmaMillis: number | undefined;
  /** From a bounded log histogram (about 2% relative error). */
  readonly latencyP50Millis: number | undefined;
  readonly latencyP99Millis: number | undefined;
  readonly latencySumMillis: number;
  /** Active health. */
  readonly healthy: boolean;
  /** Passively ejected now. */
  readonly ejected: boolean;
  readonly ejectedUntilMillis: number | undefined;
  readonly metadata: InstanceMetadata;
}

/** Statistics of a balancer. */
export interface BalancerStats {
  readonly strategy: string;
  readonly totalInstances: number;
  readonly healthyInstances: number;
  readonly unhealthyInstances: number;
  readonly ejectedInstances: number;
  readonly panic: boolean;
  readonly totalRequests: number;
  readonly failedRequests: number;
  /** Picks refused because no instance was usable or fit. */
  readonly noInstanceErrors: number;
  readonly inflight: number;
  /** Mean of the instances' latency EWMAs, in ms. */
  readonly averageLatencyMillis: number | undefined;
  readonly instances: readonly InstanceStats[];
}
