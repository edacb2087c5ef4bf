/** Prometheus text exposition (format 0.0.4) of a balancer's statistics. */
import type { BalancerStats } from './balancer-stats';
import { ConfigError } from '../kernel/errors';

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
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Labels the exposition sets itself; a common label of that name would be silently overwritten. */
const RESERVED_LABELS: ReadonlySet<string> = new Set(['instance', 'state', 'outcome', 'quantile']);

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function labelText(labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels);
  return entries.length === 0 ? '' : `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`;
}

/** Renders the statistics as Prometheus text: gauges, counters and a latency summary per instance. */
export function formatPrometheus(stats: BalancerStats, options: PrometheusOptions = {}): string {
  const prefix = options.prefix ?? 'kysely_scale_balancer';
  if (!METRIC_NAME.test(prefix)) throw new ConfigError('prefix', `\`${prefix}\` is not a valid Prometheus metric name`);
  const common = options.labels ?? {};
  for (const name of Object.keys(common)) {
    if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new ConfigError('labels', `\`${name}\` is not a valid Prometheus label name`);
    if (RESERVED_LABELS.has(name)) throw new ConfigError('labels', `\`${name}\` is set per sample by the exposition; choose another name`);
  }
  const lines: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter' | 'summary', help: string, samples: Array<[string, Record<string, string>, number]>): void => {
    lines.push(`# HELP ${prefix}_${name} ${help}`, `# TYPE ${prefix}_${name} ${type}`);
    for (const [suffix, labels, value] of samples) {
      lines.push(`${prefix}_${name}${suffix}${labelText({ ...common, ...labels })} ${formatValue(value)}`);
    }
  };
  const each = (f: (i: BalancerStats['instances'][number]) => number): Array<[string, Record<string, string>, number]> =>
    stats.instances.map((i) => ['', { instance: i.id }, f(i)]);

  family('instances', 'gauge', 'Instances by state.', [
    ['', { state: 'healthy' }, stats.healthyInstances],
    ['', { state: 'unhealthy' }, stats.unhealthyInstances],
    ['', { state: 'ejected' }, stats.ejectedInstances],
  ]);
  family('panic', 'gauge', '1 while panic mode routes to every instance.', [['', {}, stats.panic ? 1 : 0]]);
  family('no_instance_errors_total', 'counter', 'Picks refused because no instance was usable or fit.', [['', {}, stats.noInstanceErrors]]);
  family('instance_up', 'gauge', '1 when the instance is healthy and not ejected.', each((i) => (i.healthy && !i.ejected ? 1 : 0)));
  family('instance_weight', 'gauge', 'Effective weight (after slow start).', each((i) => i.effectiveWeight));
  family('requests_in_flight', 'gauge', 'Calls picked and not yet released.', each((i) => i.inflight));
  family(
    'requests_total',
    'counter',
    'Finished calls by outcome (cancelled: the caller gave up).',
    stats.instances.flatMap((i): Array<[string, Record<string, string>, number]> => [
      ['', { instance: i.id, outcome: 'success' }, i.totalRequests - i.failedRequests],
      ['', { instance: i.id, outcome: 'failure' }, i.failedRequests],
      ['', { instance: i.id, outcome: 'cancelled' }, i.cancelledRequests],
    ]),
  );
  family(
    'request_duration_seconds',
    'summary',
    'Call latency.',
    stats.instances.flatMap((i): Array<[string, Record<string, string>, number]> => [
      ...(i.latencyP50Millis === undefined ? [] : [['', { instance: i.id, quantile: '0.5' }, i.latencyP50Millis / 1000] as [string, Record<string, string>, number]]),
      ...(i.latencyP99Millis === undefined ? [] : [['', { instance: i.id, quantile: '0.99' }, i.latencyP99Millis / 1000] as [string, Record<string, string>, number]]),
      ['_sum', { instance: i.id }, i.latencySumMillis / 1000],
      ['_count', { instance: i.id }, i.totalRequests],
    ]),
  );
  return `${lines.join('\n')}\n`;
}
