/**
 * `kysely-scale/metrics`: Prometheus for services without OpenTelemetry. One prom-client registry
 * holds every kysely-scale metric of the process (statements, replicas and pools of each
 * ShardedDialect; hits, misses and the bus of each cache; each balancer's instances); mount
 * {@link metricsHandler} on any HTTP server:
 *
 * ```ts
 * import { metricsHandler } from 'kysely-scale/metrics'
 * http.createServer(metricsHandler()).listen(9464)          // or app.get('/metrics', metricsHandler())
 * ```
 *
 * With an OpenTelemetry SDK installed, the same metrics (and spans) reach it through
 * `@opentelemetry/api`, without this entry point.
 *
 * @packageDocumentation
 */
export { metricsHandler, metricsRegistry, PROMETHEUS_CONTENT_TYPE, type MetricsHandlerOptions } from '../kernel/prometheus-registry';
export { INSTRUMENTATION_SCOPE } from '../kernel/telemetry';
