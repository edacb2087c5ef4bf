/**
 * The look at OpenTelemetry's global providers that every routed statement makes is a comparison
 * of the API's registrations with the last ones seen: it must still notice an SDK installed,
 * removed and installed again, for traces and for metrics.
 */
import { metrics, trace } from '@opentelemetry/api';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { defineMetric, tracingActive } from '../../../src/kernel/telemetry';

const metric = defineMetric({ name: 'kysely_scale.test.provider_check', prometheusName: null, description: 'test', unit: '1', kind: 'counter', attributes: [] });

afterEach(() => {
  trace.disable();
  metrics.disable();
});

describe('OpenTelemetry provider check', () => {
  it('follows a tracer provider installed, removed and installed again', () => {
    expect(tracingActive()).toBe(false);
    expect(tracingActive()).toBe(false);
    trace.setGlobalTracerProvider(new BasicTracerProvider());
    expect(tracingActive()).toBe(true);
    trace.disable();
    expect(tracingActive()).toBe(false);
    trace.setGlobalTracerProvider(new BasicTracerProvider());
    expect(tracingActive()).toBe(true);
  });

  it('follows a meter provider installed, removed and replaced', () => {
    expect(metric.enabled).toBe(false);
    metrics.setGlobalMeterProvider(new MeterProvider());
    expect(metric.enabled).toBe(true);
    metrics.disable();
    expect(metric.enabled).toBe(false);
    metrics.setGlobalMeterProvider(new MeterProvider());
    expect(metric.enabled).toBe(true);
  });
});
