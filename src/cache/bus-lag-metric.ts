/**
 * The invalidation bus's delivery lag: from a message's publish on one instance to the moment
 * another instance applied it (its L1 entries dropped). Each message carries its publish time
 * (`clock.now()` of the publisher); the receiver subtracts it from its own `clock.now()`, so the
 * lag is measured on two wall clocks and skew between hosts adds to it (a negative result counts
 * as 0). Messages from versions that send no publish time are not measured.
 */
import { defineMetric } from '../kernel/telemetry';

const MESSAGE_TYPE = 'kysely_scale.cache.bus.message.type';

const BUS_LAG = defineMetric({
  name: 'kysely_scale.cache.bus.lag',
  prometheusName: 'kysely_scale_cache_bus_lag_seconds',
  description: "Time from an invalidation bus message's publish on one instance to its application on another, by message type (keys, tags, namespace); wall clocks of both hosts.",
  unit: 's',
  kind: 'histogram',
  attributes: [MESSAGE_TYPE],
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
});

/** Records that a bus message of `type` was applied `lagMillis` after its publish. */
export function recordBusLag(type: string, lagMillis: number): void {
  if (BUS_LAG.enabled) BUS_LAG.record(Math.max(0, lagMillis) / 1000, { [MESSAGE_TYPE]: type });
}
