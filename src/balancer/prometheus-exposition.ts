/**
 * Prometheus text exposition of one balancer's statistics snapshot, through prom-client (the
 * registry of `kysely-scale/metrics` shows every live balancer the same way, with the same names).
 */
import { Registry } from 'prom-client';
import { promFamily } from '../kernel/prometheus-registry';
import { ConfigError } from '../kernel/errors';
import type { BalancerStats } from './balancer-stats';
import { BALANCER_METRICS, latencySummaryFamily } from './balancer-telemetry';

/** Options of {@link formatPrometheus}. */
export interface PrometheusOptions {
  /**
   * Prefix of every metric name.
   * @default 'kysely_scale_balancer'
   */
  readonly prefix?: string;
  /** Labels added to every sample (e.g. `{ service: 'api' }`). */
  readonly labels?: Readonly<Record<string, string>>;
}

/** Content type of the exposition. */
export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

const DEFAULT_PREFIX = 'kysely_scale_balancer';
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Labels the exposition sets itself; a common label of that name would be silently overwritten. */
const RESERVED_LABELS: ReadonlySet<string> = new Set(['instance', 'state', 'outcome', 'quantile']);

/**
 * Renders the statistics as Prometheus text: gauges, counters and a latency summary per instance
 * (the families of the balancer's metrics in `kysely-scale/metrics`, for this one snapshot).
 */
export function formatPrometheus(stats: BalancerStats, options: PrometheusOptions = {}): Promise<string> {
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (!METRIC_NAME.test(prefix)) throw new ConfigError('prefix', `\`${prefix}\` is not a valid Prometheus metric name`);
  const common = options.labels ?? {};
  for (const name of Object.keys(common)) {
    if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new ConfigError('labels', `\`${name}\` is not a valid Prometheus label name`);
    if (RESERVED_LABELS.has(name)) throw new ConfigError('labels', `\`${name}\` is set per sample by the exposition; choose another name`);
  }
  const registry = new Registry();
  registry.setDefaultLabels({ ...common });
  const named = (name: string): string => prefix + name.slice(DEFAULT_PREFIX.length);
  // The families of the earlier exposition, in its order: the latency summary after the call counts.
  for (const { metric, read } of BALANCER_METRICS) {
    promFamily(registry, metric, named(metric.spec.prometheusName!), (observe) => read(stats, observe));
    if (metric.spec.prometheusName === `${DEFAULT_PREFIX}_requests_total`) {
      registry.registerMetric(latencySummaryFamily(named(`${DEFAULT_PREFIX}_request_duration_seconds`), () => [stats]) as never);
    }
  }
  return registry.metrics();
}
