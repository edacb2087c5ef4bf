/**
 * `kysely-scale/balancer`: what a user calls to balance calls across instances of a service — the
 * balancer and its options, the strategies, health checks, statistics and alerts, a balanced fetch,
 * a reverse proxy, errors, and the clocks tests inject. Helpers the pieces share (the retry rule,
 * requirement parsing, the latency histogram, slow-start and ejection bookkeeping) stay internal.
 *
 * @packageDocumentation
 */

// The balancer
export { Balancer, BALANCER_DEFAULTS, type AcquireRequest, type BalancerOptions, type Lease, type RunOptions } from './balancer';
export type { BalancerEventMap } from './balancer-events';
export type { BalancedInstance, CapabilityValue, InstanceMetadata, InstanceSpec, NonEmptyArray } from './balancer-instance';
export type { CallOutcome, PickRequest, Strategy } from './balancer-strategy';
export type { Requirement, RequirementOperator, Requirements } from './resource-requirements';
export { OUTLIER_EJECTION_DEFAULTS, type Ejection, type OutlierEjectionOptions } from './outlier-ejection';
export { SLOW_START_DEFAULTS, type SlowStartOptions } from './slow-start';

// Errors (and the clocks tests inject)
export { BudgetExceededError, NoInstanceAvailableError, RequestTimeoutError } from './balancer-errors';
export { ConfigError } from '../kernel/errors';
export { ManualClock, seededRandom, systemClock, type Cancel, type Clock, type RandomSource } from '../kernel/clock';

// Strategies
export { roundRobin } from './strategies/round-robin';
export { smoothWeightedRoundRobin } from './strategies/smooth-weighted-round-robin';
export { weightedRandom, type WeightedRandomOptions } from './strategies/random';
export { leastConnections } from './strategies/least-connections';
export { powerOfTwoChoices, type PowerOfTwoChoicesOptions } from './strategies/power-of-two-choices';
export { peakEwma, PEAK_EWMA_DEFAULTS, type PeakEwma, type PeakEwmaOptions } from './strategies/peak-ewma';
export { consistentHash, CONSISTENT_HASH_DEFAULTS, type ConsistentHashOptions } from './strategies/consistent-hash';
export { resourceAware, RESOURCE_AWARE_DEFAULTS, type ResourceAwareOptions } from './strategies/resource-aware';
export {
  loadAdjustedLatency,
  LOAD_ADJUSTED_LATENCY_DEFAULTS,
  type LoadAdjustedLatencyOptions,
} from './strategies/load-adjusted-latency';
export { costAware, COST_AWARE_DEFAULTS, type CostAwareOptions } from './strategies/cost-aware';
export {
  defaultDynamicRules,
  dynamicSelector,
  DYNAMIC_SELECTOR_DEFAULTS,
  type DynamicRule,
  type DynamicSelectorOptions,
  type SelectorMetrics,
} from './strategies/dynamic-selector';
export type { StrategyName } from './strategies/strategy-registry';

// Health, statistics, alerts, advice
export {
  HealthChecker,
  HEALTH_CHECK_DEFAULTS,
  type HealthCheckOptions,
  type HealthCheckerEventMap,
  type HealthProbe,
  type HealthState,
  type HealthTarget,
} from './health-checker';
export type { BalancerStats, InstanceStats } from './balancer-stats';
export { formatPrometheus, PROMETHEUS_CONTENT_TYPE, type PrometheusOptions } from './prometheus-exposition';
export { AlertMonitor, ALERT_MONITOR_DEFAULTS, type Alert, type AlertKind, type AlertMonitorOptions } from './balancer-alerts';
export {
  AutoscalingAdvisor,
  AUTOSCALING_ADVISOR_DEFAULTS,
  type AutoscalingAdvisorOptions,
  type ScalingAction,
  type ScalingAdvice,
} from './autoscaling-advisor';

// HTTP: health probe, balanced fetch, reverse proxy
export { httpHealthProbe, type HttpHealthProbeOptions } from './http/http-health-probe';
export {
  BALANCED_FETCH_DEFAULTS,
  createBalancedFetch,
  type BalancedFetch,
  type BalancedFetchOptions,
  type BalancedRequestInit,
} from './http/http-client';
export { createProxyServer, listenProxy, PROXY_DEFAULTS, type ProxyOptions, type RunningProxy } from './http/proxy';
export { loadProxyConfig, type ProxyConfig, type ProxyHealthConfig } from './http/proxy-config';
export { startProxyFromConfig, type ProxyFromConfig, type StartProxyOptions, type UpstreamChanges } from './http/proxy-start';
