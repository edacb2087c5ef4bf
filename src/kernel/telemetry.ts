/**
 * OpenTelemetry for every layer: the tracer, and metrics that reach both an OpenTelemetry SDK (when
 * the application installed one) and the Prometheus registry of `kysely-scale/metrics` (when it was
 * asked for). Only `@opentelemetry/api` is loaded here; without an SDK its tracer and meter are
 * no-ops, and {@link Metric.enabled} is false until an SDK or a sink is there, so callers skip
 * building attributes and the hot paths pay a look at the API's global meter provider.
 *
 * Each layer declares its metrics once ({@link defineMetric}) in its own `*-telemetry.ts` file;
 * a metric is either recorded as things happen (counters, histograms, up-down counters) or observed
 * from live state at collection time (gauges, through {@link Metric.observeWith} sources).
 */
import { metrics, trace, createNoopMeter, ProxyTracerProvider, type Attributes, type Meter, type MeterProvider, type Tracer } from '@opentelemetry/api';

/** The instrumentation scope of every span and metric. */
export const INSTRUMENTATION_SCOPE = 'kysely-scale';

let tracerCache: Tracer | undefined;

/**
 * The library's tracer. The API's tracer provider is a proxy, so a tracer taken before the
 * application installs its SDK still reaches it.
 */
export function telemetryTracer(): Tracer {
  return (tracerCache ??= trace.getTracer(INSTRUMENTATION_SCOPE));
}

/** The API's no-op tracer provider: what the global proxy delegates to until an SDK is installed. */
const NOOP_TRACER_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Where `@opentelemetry/api` 1.x (our dependency's major) keeps its global registrations: an object
 * with `trace`, `metrics`, … made at the first registration, whose fields change only when an SDK
 * registers or is disabled. Two property loads tell whether anything changed since the last look,
 * where the API's own getters check version compatibility on every call: about a tenth of a routed
 * statement's own cost (profiled on the routing benchmark).
 */
const OTEL_GLOBALS = Symbol.for('opentelemetry.js.api.1');
/** The registrations last looked at; a fresh symbol, so the first look always reads the providers. */
const NOT_LOOKED: unique symbol = Symbol('not looked at yet');

interface OtelGlobals {
  readonly trace?: unknown;
  readonly metrics?: unknown;
}

function otelGlobals(): OtelGlobals | undefined {
  return (globalThis as { [OTEL_GLOBALS]?: OtelGlobals })[OTEL_GLOBALS];
}

let tracerRegistration: unknown = NOT_LOOKED;
let tracerInstalled = false;

/**
 * Whether an OpenTelemetry tracer provider is installed. Paths whose own cost is far below a
 * no-op span's (an L1 cache hit, a routed statement) skip tracing entirely while it is false.
 */
export function tracingActive(): boolean {
  const registration = otelGlobals()?.trace;
  if (registration !== tracerRegistration) {
    tracerRegistration = registration;
    const provider = trace.getTracerProvider();
    tracerInstalled = !(provider instanceof ProxyTracerProvider) || provider.getDelegate() !== NOOP_TRACER_PROVIDER;
  }
  return tracerInstalled;
}

/**
 * How a metric is fed: `counter`, `upDownCounter` and `histogram` are recorded as things happen;
 * `gauge` (a current value) and `observedCounter` (a running total kept elsewhere) are read from
 * their sources at collection time.
 */
export type MetricKind = 'counter' | 'upDownCounter' | 'histogram' | 'gauge' | 'observedCounter';

/** A metric's declaration. */
export interface MetricSpec {
  /** OpenTelemetry name, following the semantic conventions where one exists (`db.client.operation.duration`). */
  readonly name: string;
  /** Prometheus name (`snake_case`, unit suffix, `_total` for counters); `null` when another family already shows it there. */
  readonly prometheusName: string | null;
  readonly description: string;
  /** UCUM unit (`s`, `By`, `{statement}`). */
  readonly unit: string;
  readonly kind: MetricKind;
  /** Attribute keys it may carry; Prometheus label names are these with `.` turned to `_`, unless `prometheusLabels` names them. */
  readonly attributes: readonly string[];
  /** Prometheus label names of some attributes (names kept from an earlier exposition). */
  readonly prometheusLabels?: Readonly<Record<string, string>>;
  /** Histogram bucket boundaries (in `unit`). */
  readonly buckets?: readonly number[];
}

/** Attribute values of one measurement. */
export type MetricAttributes = Readonly<Record<string, string | number | boolean>>;

/** Reports a gauge's current values: call `observe` once per attribute set. */
export type GaugeSource = (observe: (value: number, attributes: MetricAttributes) => void) => void;

/** Where measurements go besides OpenTelemetry (the Prometheus registry of `kysely-scale/metrics`). */
export interface MetricSink {
  /** A metric was declared (called for every metric, including those declared before the sink was added). */
  declare(metric: Metric): void;
  /** A counter, up-down counter or histogram measurement. */
  record(metric: Metric, value: number, attributes: MetricAttributes): void;
}

/** Histogram boundaries of operation durations in seconds (the semantic conventions' advice). */
export const DURATION_BUCKETS_SECONDS: readonly number[] = Object.freeze([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]);

const declared: Metric[] = [];
const sinks: MetricSink[] = [];
/** The meter provider the instruments were made for; `null` while it is the API's no-op one. */
let activeProvider: MeterProvider | null = null;
let checkedProvider: MeterProvider | undefined;
/** The global meter registration {@link refreshProvider} last looked at. */
let meterRegistration: unknown = NOT_LOOKED;
let meter: Meter | undefined;

type OtelInstrument = { add(value: number, attributes?: Attributes): void } | { record(value: number, attributes?: Attributes): void };

/** One declared metric. */
export class Metric {
  readonly spec: MetricSpec;
  readonly #sources = new Set<GaugeSource>();
  #otel: OtelInstrument | undefined;
  #otelProvider: MeterProvider | null = null;

  constructor(spec: MetricSpec) {
    this.spec = Object.freeze({ ...spec, attributes: Object.freeze([...spec.attributes]) });
  }

  /** Whether a measurement would reach anything: check it before building attributes. */
  get enabled(): boolean {
    return refreshProvider() || sinks.length > 0;
  }

  /** Records a counter, up-down counter or histogram measurement. */
  record(value: number, attributes: MetricAttributes): void {
    if (!this.enabled) return;
    if (activeProvider !== null) {
      const instrument = this.#instrument();
      if ('add' in instrument) instrument.add(value, attributes);
      else instrument.record(value, attributes);
    }
    for (let i = 0; i < sinks.length; i++) sinks[i]!.record(this, value, attributes);
  }

  /**
   * Adds a source of a gauge's values, read at each collection (by the SDK's reader or a
   * Prometheus scrape). Returns the function that removes it (call it when the object it reads closes).
   */
  observeWith(source: GaugeSource): () => void {
    this.#sources.add(source);
    refreshProvider();
    return () => {
      this.#sources.delete(source);
    };
  }

  /** Calls every source of this gauge. */
  collect(observe: (value: number, attributes: MetricAttributes) => void): void {
    for (const source of this.#sources) {
      try {
        source(observe);
      } catch {
        // A source that fails (a closed pool) reports nothing this time; a scrape never fails for it.
      }
    }
  }

  /** The OpenTelemetry instrument of the current meter (re-made when the application installs another SDK). */
  #instrument(): OtelInstrument {
    if (this.#otel === undefined || this.#otelProvider !== activeProvider) {
      this.#otelProvider = activeProvider;
      this.#otel = makeInstrument(meter!, this);
    }
    return this.#otel;
  }

  /** Whether the metric is read from sources at collection time. */
  get observed(): boolean {
    return this.spec.kind === 'gauge' || this.spec.kind === 'observedCounter';
  }

  /** Registers an observed metric's callback with a new meter. */
  attachObservable(to: Meter): void {
    if (!this.observed) return;
    const options = { description: this.spec.description, unit: this.spec.unit };
    const instrument = this.spec.kind === 'gauge' ? to.createObservableGauge(this.spec.name, options) : to.createObservableCounter(this.spec.name, options);
    instrument.addCallback((result) => this.collect((value, attributes) => result.observe(value, attributes)));
  }
}

function makeInstrument(to: Meter, metric: Metric): OtelInstrument {
  const { name, description, unit, kind, buckets } = metric.spec;
  const options = { description, unit };
  if (kind === 'counter') return to.createCounter(name, options);
  if (kind === 'upDownCounter') return to.createUpDownCounter(name, options);
  if (kind === 'histogram') return to.createHistogram(name, buckets === undefined ? options : { ...options, advice: { explicitBucketBoundaries: [...buckets] } });
  throw new TypeError(`${name} is read from sources (${kind}): give it sources with observeWith()`);
}

/**
 * Notices an SDK installed (or replaced) since the last look; returns whether one is installed.
 * The API has no proxy meter provider, so instruments are made for the provider found here.
 */
function refreshProvider(): boolean {
  const registration = otelGlobals()?.metrics;
  if (registration === meterRegistration) return activeProvider !== null;
  meterRegistration = registration;
  const provider = metrics.getMeterProvider();
  if (provider === checkedProvider) return activeProvider !== null;
  checkedProvider = provider;
  const candidate = provider.getMeter(INSTRUMENTATION_SCOPE);
  if (candidate === createNoopMeter()) {
    activeProvider = null;
    meter = undefined;
  } else {
    activeProvider = provider;
    meter = candidate;
    for (const metric of declared) metric.attachObservable(candidate);
  }
  return activeProvider !== null;
}

/** Declares a metric (once per process, at module load of the layer that owns it). */
export function defineMetric(spec: MetricSpec): Metric {
  const metric = new Metric(spec);
  declared.push(metric);
  if (meter !== undefined) metric.attachObservable(meter);
  for (const sink of sinks) sink.declare(metric);
  return metric;
}

/**
 * A Prometheus family in prom-client's metric shape, for what is not an OpenTelemetry metric (a
 * summary of quantiles computed elsewhere). Joins the registry of `kysely-scale/metrics`.
 */
export interface PrometheusFamily {
  readonly name: string;
  readonly help: string;
  readonly type: 'summary' | 'gauge' | 'counter';
  readonly aggregator: 'sum';
  get(): Promise<{
    name: string;
    help: string;
    type: 'summary' | 'gauge' | 'counter';
    aggregator: 'sum';
    values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
  }>;
  reset(): void;
}

const prometheusFamilies: PrometheusFamily[] = [];
const familyListeners: ((family: PrometheusFamily) => void)[] = [];

/** Adds a family to the Prometheus registry (now, or when it is created). */
export function addPrometheusFamily(family: PrometheusFamily): void {
  prometheusFamilies.push(family);
  for (const listener of familyListeners) listener(family);
}

/** Calls `listener` for every family added so far and later (the Prometheus registry). */
export function onPrometheusFamily(listener: (family: PrometheusFamily) => void): void {
  familyListeners.push(listener);
  for (const family of prometheusFamilies) listener(family);
}

/** Every declared metric, in declaration order. */
export function declaredMetrics(): readonly Metric[] {
  return declared;
}

/** Adds a sink; it is told about every metric declared so far and later. Returns the function that removes it. */
export function addMetricSink(sink: MetricSink): () => void {
  sinks.push(sink);
  for (const metric of declared) sink.declare(metric);
  return () => {
    const at = sinks.indexOf(sink);
    if (at >= 0) sinks.splice(at, 1);
  };
}

/** Checks for an SDK installed since the last look now (gauges are registered with it at once rather than at the next measurement). */
export function refreshTelemetry(): void {
  refreshProvider();
}
