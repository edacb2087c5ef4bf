/**
 * `kysely-scale/balancer`: strategies, the balancer, health checks, outlier ejection, statistics,
 * alerts, the autoscaling advisor, a balanced fetch and a reverse proxy.
 *
 * @packageDocumentation
 */
export { Balancer, BALANCER_DEFAULTS, type AcquireRequest, type BalancerOptions, type Lease, type RunOptions } from './balancer';
export { ManualClock, mathRandom, seededRandom, systemClock, type Cancel, type Clock, type RandomSource } from '../kernel/clock';
export { BudgetExceededError, NoInstanceAvailableError, RequestTimeoutError } from './balancer-errors';
export type { BalancerEventMap } from './balancer-events';
export {
  isNonEmpty,
  type BalancedInstance,
  type CapabilityValue,
  type InstanceMetadata,
  type InstanceSpec,
  type NonEmptyArray,
} from './balancer-instance';
export type { BalancerStats, InstanceStats } from './balancer-stats';
export { loadPerWeight, type CallOutcome, type PickRequest, type Strategy } from './balancer-strategy';
export { LatencyHistogram } from './latency-histogram';
export { OutlierEjector, OUTLIER_EJECTION_DEFAULTS, type Ejection, type OutlierEjectionOptions } from './outlier-ejection';
export { SlowStart, SLOW_START_DEFAULTS, type SlowStartOptions } from './slow-start';
export {
  HealthChecker,
  HEALTH_CHECK_DEFAULTS,
  type HealthCheckOptions,
  type HealthCheckerEventMap,
  type HealthProbe,
  type HealthState,
  type HealthTarget,
} from './health-checker';
export {
  meetsRequirements,
  parseQuantity,
  parseRequirements,
  type Requirement,
  type RequirementOperator,
  type Requirements,
} from './resource-requirements';
export { AlertMonitor, ALERT_MONITOR_DEFAULTS, type Alert, type AlertKind, type AlertMonitorOptions } from './balancer-alerts';
export {
  AutoscalingAdvisor,
  AUTOSCALING_ADVISOR_DEFAULTS,
  type AutoscalingAdvisorOptions,
  type ScalingAction,
  type ScalingAdvice,
} from './autoscaling-advisor';
export { formatPrometheus, PROMETHEUS_CONTENT_TYPE, type PrometheusOptions } from './prometheus-exposition';
export { httpHealthProbe, type HttpHealthProbeOptions } from './http/http-health-probe';
export { IDEMPOTENT_METHODS, isConnectionError, isIdempotent } from './http/http-retry';
export {
  BALANCED_FETCH_DEFAULTS,
  createBalancedFetch,
  type BalancedFetch,
  type BalancedFetchOptions,
  type BalancedRequestInit,
} from './http/http-client';
export { createProxyServer, forwardedHeaders, listenProxy, PROXY_DEFAULTS, type ProxyOptions, type RunningProxy } from './http/proxy';
export {
  loadProxyConfig,
  parseUpstream,
  PROXY_USAGE,
  startProxyFromConfig,
  type ProxyConfig,
  type ProxyFromConfig,
  type ProxyHealthConfig,
} from './http/proxy-config';
// Strategies
export { roundRobin } from './strategies/round-robin';
export { smoothWeightedRoundRobin } from './strategies/smooth-weighted-round-robin';
export { weightedRandom, type WeightedRandomOptions } from './strategies/random';
export { leastConnections } from './strategies/least-connections';
export { powerOfTwoChoices, type PowerOfTwoChoicesOptions } from './strategies/power-of-two-choices';
export { peakEwma, PEAK_EWMA_DEFAULTS, type PeakEwmaOptions } from './strategies/peak-ewma';
export { consistentHash, CONSISTENT_HASH_DEFAULTS, type ConsistentHashOptions } from './strategies/consistent-hash';
export { freeResourceScore, resourceAware, RESOURCE_AWARE_DEFAULTS, type ResourceAwareOptions } from './strategies/resource-aware';
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
  selectorMetrics,
  type DynamicRule,
  type DynamicSelectorOptions,
  type SelectorMetrics,
} from './strategies/dynamic-selector';
export { isStrategyName, STRATEGY_FACTORIES, type StrategyContext, type StrategyName } from './strategies/strategy-registry';
