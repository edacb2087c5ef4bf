/**
 * Spans and metrics of balancers. Every Balancer is tracked (weakly: a balancer dropped by its
 * owner is not kept alive) from its construction; its statistics feed the gauges and running
 * totals at each collection, its `ejected` events a counter, and each balanced call (`run()`)
 * gets a span (instance, attempt, outcome) and a duration measurement.
 *
 * The Prometheus names are those of the balancer's earlier hand-written exposition
 * (`kysely_scale_balancer_*`, label `instance`), so dashboards built on them keep working; the
 * latency summary (quantiles from the balancer's own histogram) joins the registry as a family of
 * its own (see prometheus-exposition.ts).
 */
import { SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';
import { DURATION_BUCKETS_SECONDS, addPrometheusFamily, defineMetric, telemetryTracer, tracingActive, type GaugeSource, type Metric, type PrometheusFamily } from '../kernel/telemetry';
import type { BalancerStats } from './balancer-stats';

/** What telemetry reads of a balancer. */
export interface ObservedBalancer {
  stats(): BalancerStats;
  on(event: 'ejected', listener: (payload: { readonly instanceId: string }) => void): unknown;
  readonly strategy: { readonly name: string };
  readonly clock: { monotonicNow(): number };
}

const INSTANCE = 'kysely_scale.balancer.instance';
const STATE = 'kysely_scale.balancer.instance.state';
const OUTCOME = 'kysely_scale.outcome';
const ATTEMPT = 'kysely_scale.balancer.attempt';
const STRATEGY = 'kysely_scale.balancer.strategy';
const LABELS = Object.freeze({ [INSTANCE]: 'instance', [STATE]: 'state', [OUTCOME]: 'outcome' });

const live = new Set<WeakRef<ObservedBalancer>>();

/** Calls `each` with the statistics of every live balancer. */
function eachStats(each: (stats: BalancerStats) => void): void {
  for (const ref of live) {
    const balancer = ref.deref();
    if (balancer === undefined) live.delete(ref);
    else each(balancer.stats());
  }
}

/** A gauge or running total of every live balancer's statistics. */
function fromStats(metric: Metric, read: (stats: BalancerStats, observe: Parameters<GaugeSource>[0]) => void): Metric {
  metric.observeWith((observe) => eachStats((stats) => read(stats, observe)));
  return metric;
}

const perInstance = (name: string, prometheusName: string, description: string, kind: 'gauge' | 'observedCounter', attributes: string[] = [INSTANCE]): Metric =>
  defineMetric({ name, prometheusName, description, unit: kind === 'gauge' ? '1' : '{call}', kind, attributes, prometheusLabels: LABELS });

/** The metric families built from statistics, in the order of the earlier exposition; `prefix` replaces `kysely_scale_balancer`. */
export const BALANCER_METRICS: readonly { readonly metric: Metric; readonly read: (stats: BalancerStats, observe: Parameters<GaugeSource>[0]) => void }[] = [
  {
    metric: perInstance('kysely_scale.balancer.instances', 'kysely_scale_balancer_instances', 'Instances by state.', 'gauge', [STATE]),
    read: (s, observe) => {
      observe(s.healthyInstances, { [STATE]: 'healthy' });
      observe(s.unhealthyInstances, { [STATE]: 'unhealthy' });
      observe(s.ejectedInstances, { [STATE]: 'ejected' });
    },
  },
  {
    metric: perInstance('kysely_scale.balancer.panic', 'kysely_scale_balancer_panic', '1 while panic mode routes to every instance.', 'gauge', []),
    read: (s, observe) => observe(s.panic ? 1 : 0, {}),
  },
  {
    metric: perInstance('kysely_scale.balancer.no_instance_errors', 'kysely_scale_balancer_no_instance_errors_total', 'Picks refused because no instance was usable or fit.', 'observedCounter', []),
    read: (s, observe) => observe(s.noInstanceErrors, {}),
  },
  {
    metric: perInstance('kysely_scale.balancer.instance.up', 'kysely_scale_balancer_instance_up', '1 when the instance is healthy and not ejected.', 'gauge'),
    read: (s, observe) => s.instances.forEach((i) => observe(i.healthy && !i.ejected ? 1 : 0, { [INSTANCE]: i.id })),
  },
  {
    metric: perInstance('kysely_scale.balancer.instance.weight', 'kysely_scale_balancer_instance_weight', 'Effective weight (after slow start).', 'gauge'),
    read: (s, observe) => s.instances.forEach((i) => observe(i.effectiveWeight, { [INSTANCE]: i.id })),
  },
  {
    metric: perInstance('kysely_scale.balancer.requests.in_flight', 'kysely_scale_balancer_requests_in_flight', 'Calls picked and not yet released.', 'gauge'),
    read: (s, observe) => s.instances.forEach((i) => observe(i.inflight, { [INSTANCE]: i.id })),
  },
  {
    metric: perInstance('kysely_scale.balancer.requests', 'kysely_scale_balancer_requests_total', 'Finished calls by outcome (cancelled: the caller gave up).', 'observedCounter', [INSTANCE, OUTCOME]),
    read: (s, observe) =>
      s.instances.forEach((i) => {
        observe(i.totalRequests - i.failedRequests, { [INSTANCE]: i.id, [OUTCOME]: 'success' });
        observe(i.failedRequests, { [INSTANCE]: i.id, [OUTCOME]: 'failure' });
        observe(i.cancelledRequests, { [INSTANCE]: i.id, [OUTCOME]: 'cancelled' });
      }),
  },
  {
    metric: perInstance('kysely_scale.balancer.instance.healthy', 'kysely_scale_balancer_instance_healthy', '1 while the instance passes its health checks.', 'gauge'),
    read: (s, observe) => s.instances.forEach((i) => observe(i.healthy ? 1 : 0, { [INSTANCE]: i.id })),
  },
  {
    metric: perInstance('kysely_scale.balancer.instance.ejected', 'kysely_scale_balancer_instance_ejected', '1 while the instance is ejected for consecutive failures.', 'gauge'),
    read: (s, observe) => s.instances.forEach((i) => observe(i.ejected ? 1 : 0, { [INSTANCE]: i.id })),
  },
];
for (const { metric, read } of BALANCER_METRICS) fromStats(metric, read);

/** Ejections for consecutive failures, per instance. */
export const BALANCER_EJECTIONS = defineMetric({
  name: 'kysely_scale.balancer.ejections',
  prometheusName: 'kysely_scale_balancer_ejections_total',
  description: 'Passive ejections of an instance after consecutive failures.',
  unit: '{ejection}',
  kind: 'counter',
  attributes: [INSTANCE],
  prometheusLabels: LABELS,
});

/** Duration of balanced calls (`run()`), per instance and outcome. */
export const BALANCED_CALL_DURATION = defineMetric({
  name: 'kysely_scale.balancer.call.duration',
  prometheusName: 'kysely_scale_balancer_call_duration_seconds',
  description: 'Duration of balanced calls by instance and outcome.',
  unit: 's',
  kind: 'histogram',
  attributes: [INSTANCE, OUTCOME],
  prometheusLabels: LABELS,
  buckets: DURATION_BUCKETS_SECONDS,
});

/** Starts tracking a balancer (called by its constructor). */
export function trackBalancer(balancer: ObservedBalancer): void {
  live.add(new WeakRef(balancer));
  balancer.on('ejected', ({ instanceId }) => {
    if (BALANCER_EJECTIONS.enabled) BALANCER_EJECTIONS.record(1, { [INSTANCE]: instanceId });
  });
}

/** The statistics of every live balancer (for the latency summary family). */
export function liveBalancerStats(): BalancerStats[] {
  const all: BalancerStats[] = [];
  eachStats((s) => all.push(s));
  return all;
}

/** One balanced call being observed. */
export interface BalancedCallObservation {
  end(outcome: 'success' | 'failure' | 'cancelled'): void;
}

const UNOBSERVED: BalancedCallObservation = Object.freeze({ end: () => undefined });

/**
 * Starts observing a balanced call on `instanceId`. `excluded` is how many instances the caller
 * already tried for this request (the proxy's and the balanced fetch's retries), so the attempt is one more.
 */
export function observeBalancedCall(balancer: ObservedBalancer, instanceId: string, excluded: number): BalancedCallObservation {
  const tracing = tracingActive();
  if (!tracing && !BALANCED_CALL_DURATION.enabled) return UNOBSERVED;
  const span = tracing ? telemetryTracer().startSpan('balancer call', { kind: SpanKind.INTERNAL }) : undefined;
  const recording = span?.isRecording() === true;
  if (!recording && !BALANCED_CALL_DURATION.enabled) return UNOBSERVED;
  if (recording) span!.setAttributes({ [INSTANCE]: instanceId, [ATTEMPT]: excluded + 1, [STRATEGY]: balancer.strategy.name });
  const clock = balancer.clock;
  const started = clock.monotonicNow();
  return { end: (outcome) => endCall(recording ? span : undefined, instanceId, outcome, clock.monotonicNow() - started) };
}

function endCall(span: Span | undefined, instanceId: string, outcome: 'success' | 'failure' | 'cancelled', latencyMillis: number): void {
  if (BALANCED_CALL_DURATION.enabled) BALANCED_CALL_DURATION.record(latencyMillis / 1000, { [INSTANCE]: instanceId, [OUTCOME]: outcome });
  if (span === undefined) return;
  span.setAttribute(OUTCOME, outcome);
  if (outcome === 'failure') span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/**
 * The latency summary of the earlier exposition (quantiles 0.5 and 0.99 from each instance's
 * histogram, `_sum` and `_count`), over the statistics `statsOf` returns at each scrape.
 */
export function latencySummaryFamily(name: string, statsOf: () => readonly BalancerStats[]): PrometheusFamily {
  const help = 'Call latency.';
  const family: PrometheusFamily = {
    name,
    help,
    type: 'summary',
    aggregator: 'sum',
    get: () =>
      Promise.resolve({
        name,
        help,
        type: 'summary' as const,
        aggregator: 'sum' as const,
        values: statsOf().flatMap((stats) =>
          stats.instances.flatMap((i): { labels: Record<string, string | number>; value: number; metricName?: string }[] => [
            ...(i.latencyP50Millis === undefined ? [] : [{ labels: { instance: i.id, quantile: 0.5 }, value: i.latencyP50Millis / 1000 }]),
            ...(i.latencyP99Millis === undefined ? [] : [{ labels: { instance: i.id, quantile: 0.99 }, value: i.latencyP99Millis / 1000 }]),
            { metricName: `${name}_sum`, labels: { instance: i.id }, value: i.latencySumMillis / 1000 },
            { metricName: `${name}_count`, labels: { instance: i.id }, value: i.totalRequests },
          ]),
        ),
      }),
    reset: () => undefined,
  };
  return family;
}

addPrometheusFamily(latencySummaryFamily('kysely_scale_balancer_request_duration_seconds', liveBalancerStats));
