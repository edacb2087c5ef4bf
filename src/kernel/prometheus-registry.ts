/**
 * One Prometheus registry (prom-client) for every kysely-scale metric in the process: each metric
 * declared with `defineMetric` becomes a prom-client family the first time the registry is asked
 * for, and families others add (the balancer's statistics) join it. {@link metricsHandler} serves
 * it to any Node.js HTTP server (or Express, Fastify's raw request, …).
 *
 * Not loaded by the core entry point: importing `kysely-scale/metrics` (or starting the proxy)
 * is what turns Prometheus collection on, so a service without it pays nothing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, type Metric as PromMetric } from 'prom-client';
import { addMetricSink, onPrometheusFamily, type GaugeSource, type Metric, type MetricAttributes } from './telemetry';

/** Content type of the Prometheus text exposition (format 0.0.4). */
export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

type Recordable = { record(value: number, attributes: MetricAttributes): void };

let registry: Registry | undefined;
const families = new Map<Metric, Recordable>();

/** The Prometheus label names of a metric's attributes (`db.operation.name` → `db_operation_name`, unless the metric names it). */
function labelNames(metric: Metric): readonly string[] {
  const named = metric.spec.prometheusLabels ?? {};
  return metric.spec.attributes.map((key) => named[key] ?? key.replace(/[^a-zA-Z0-9_]/g, '_'));
}

/**
 * The registry holding every kysely-scale metric. The first call starts Prometheus collection;
 * merge it with your own through prom-client's `Registry.merge([...])`, or serve it with {@link metricsHandler}.
 */
export function metricsRegistry(): Registry {
  if (registry !== undefined) return registry;
  const created = new Registry();
  registry = created;
  addMetricSink({
    declare: (metric) => {
      if (metric.spec.prometheusName !== null) families.set(metric, promFamily(created, metric));
    },
    record: (metric, value, attributes) => families.get(metric)?.record(value, attributes),
  });
  onPrometheusFamily((family) => {
    created.removeSingleMetric(family.name);
    created.registerMetric(family as unknown as PromMetric);
  });
  return created;
}

/** Options of {@link metricsHandler}. */
export interface MetricsHandlerOptions {
  /** The registry to serve. @default metricsRegistry() */
  readonly registry?: Registry;
}

/**
 * A request handler answering `GET` and `HEAD` with the registry's metrics in Prometheus text
 * format (other methods: 405). Mount it on any path: `http.createServer(metricsHandler())`, or
 * `app.get('/metrics', metricsHandler())`.
 */
export function metricsHandler(options: MetricsHandlerOptions = {}): (req: IncomingMessage, res: ServerResponse) => void {
  const source = options.registry ?? metricsRegistry();
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('405 method not allowed\n');
      return;
    }
    source.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': source.contentType, 'content-length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (error: unknown) => {
        if (res.headersSent) return void res.destroy();
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`500 metrics collection failed: ${error instanceof Error ? error.message : String(error)}\n`);
      },
    );
  };
}

/**
 * Makes `metric`'s prom-client family in `into`, named `name`. An observed metric reads `sources`
 * at each scrape (by default the metric's own sources).
 */
export function promFamily(into: Registry, metric: Metric, name = metric.spec.prometheusName!, sources: GaugeSource = (observe) => metric.collect(observe)): Recordable {
  const { spec } = metric;
  const names = labelNames(metric);
  const labelsOf = (attributes: MetricAttributes): Record<string, string | number> => {
    const labels: Record<string, string | number> = {};
    for (let i = 0; i < names.length; i++) {
      const value = attributes[spec.attributes[i]!];
      if (value !== undefined) labels[names[i]!] = typeof value === 'boolean' ? String(value) : value;
    }
    return labels;
  };
  const base = { name, help: spec.description, labelNames: [...names], registers: [into] };
  switch (spec.kind) {
    case 'counter': {
      const counter = new Counter(base);
      return { record: (value, attributes) => counter.inc(labelsOf(attributes), value) };
    }
    case 'upDownCounter': {
      const gauge = new Gauge(base);
      return { record: (value, attributes) => gauge.inc(labelsOf(attributes), value) };
    }
    case 'histogram': {
      const histogram = new Histogram({ ...base, ...(spec.buckets === undefined ? {} : { buckets: [...spec.buckets] }) });
      return { record: (value, attributes) => histogram.observe(labelsOf(attributes), value) };
    }
    case 'gauge':
      new Gauge({
        ...base,
        collect(this: Gauge) {
          this.reset();
          sources((value, attributes) => this.set(labelsOf(attributes), value));
        },
      });
      return NOT_RECORDED;
    case 'observedCounter':
      new Counter({
        ...base,
        collect(this: Counter) {
          this.reset();
          sources((value, attributes) => this.inc(labelsOf(attributes), value));
        },
      });
      return NOT_RECORDED;
  }
}

const NOT_RECORDED: Recordable = Object.freeze({ record: () => undefined });

