/**
 * Spans and metrics of TieredCache. The metrics cost the hit path nothing: hits, misses, loads,
 * errors, the bus and pending invalidations are read from the cache's own statistics at each
 * collection, breaker states from its L2 tier (the bus's delivery lag: bus-lag-metric.ts). A span
 * per `get`, `getOrLoad` and `set` call (with the tier that answered: `l1`, `l2`, `loader` or
 * `none`) is made only while an OpenTelemetry SDK is installed ({@link tracingActive}); the tier
 * comes from the cache's `hit` events, listened to from the first recording span on.
 */
import type { EventEmitter } from 'node:events';
import { SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';
import { defineMetric, telemetryTracer, tracingActive } from '../kernel/telemetry';
import type { CacheEvents } from './cache-events';
import type { CacheStats } from './cache-stats';
import type { BreakerState } from './circuit-breaker';

const POLICY = 'kysely_scale.cache.policy';
const TIER = 'kysely_scale.cache.tier';
const HIT = 'kysely_scale.cache.hit';
const DIRECTION = 'kysely_scale.cache.bus.direction';
const SERVER = 'kysely_scale.cache.server';
const STATE = 'kysely_scale.cache.breaker.state';

/** What telemetry reads of a cache. */
export interface ObservedCache {
  stats(): CacheStats;
  readonly events: EventEmitter<CacheEvents>;
}

type Observe = (value: number, attributes: Record<string, string>) => void;
const live = new Map<ObservedCache, () => Readonly<Record<string, BreakerState>>>();

function perPolicy(read: (stats: CacheStats, observe: Observe) => void): (observe: Observe) => void {
  return (observe) => {
    for (const cache of live.keys()) read(cache.stats(), observe);
  };
}

const counter = (name: string, prometheusName: string, description: string, attributes: string[], read: (stats: CacheStats, observe: Observe) => void): void => {
  defineMetric({ name, prometheusName, description, unit: '{operation}', kind: 'observedCounter', attributes }).observeWith(perPolicy(read));
};
const gauge = (name: string, prometheusName: string, description: string, unit: string, attributes: string[], read: (observe: Observe) => void): void => {
  defineMetric({ name, prometheusName, description, unit, kind: 'gauge', attributes }).observeWith(read);
};

counter('kysely_scale.cache.hits', 'kysely_scale_cache_hits_total', 'Cache reads a tier answered, by policy and tier.', [POLICY, TIER], (s, observe) => {
  for (const [policy, p] of Object.entries(s.policies)) {
    observe(p.l1.hits, { [POLICY]: policy, [TIER]: 'l1' });
    observe(p.l2.hits, { [POLICY]: policy, [TIER]: 'l2' });
  }
});
counter('kysely_scale.cache.misses', 'kysely_scale_cache_misses_total', 'Cache reads a tier could not answer, by policy and tier.', [POLICY, TIER], (s, observe) => {
  for (const [policy, p] of Object.entries(s.policies)) {
    observe(p.l1.misses, { [POLICY]: policy, [TIER]: 'l1' });
    observe(p.l2.misses, { [POLICY]: policy, [TIER]: 'l2' });
  }
});
counter('kysely_scale.cache.loads', 'kysely_scale_cache_loads_total', 'Loader calls (one per single-flight) and their failures, by policy.', [POLICY, 'kysely_scale.outcome'], (s, observe) => {
  for (const [policy, p] of Object.entries(s.policies)) {
    observe(p.loads - p.loadErrors, { [POLICY]: policy, 'kysely_scale.outcome': 'ok' });
    observe(p.loadErrors, { [POLICY]: policy, 'kysely_scale.outcome': 'error' });
  }
});
counter('kysely_scale.cache.l2.errors', 'kysely_scale_cache_l2_errors_total', 'L2 (Redis) commands that failed (unavailable, timeout, breaker open), by policy.', [POLICY], (s, observe) => {
  for (const [policy, p] of Object.entries(s.policies)) observe(p.l2.errors, { [POLICY]: policy });
});
counter('kysely_scale.cache.stale_served', 'kysely_scale_cache_stale_served_total', 'Stale values served within grace, by policy.', [POLICY], (s, observe) => {
  for (const [policy, p] of Object.entries(s.policies)) observe(p.staleServed, { [POLICY]: policy });
});
counter('kysely_scale.cache.bus.messages', 'kysely_scale_cache_bus_messages_total', 'Invalidation bus messages published and received.', [DIRECTION], (s, observe) => {
  observe(s.bus.published, { [DIRECTION]: 'published' });
  observe(s.bus.received, { [DIRECTION]: 'received' });
});
gauge('kysely_scale.cache.pending_invalidations', 'kysely_scale_cache_pending_invalidations', 'Invalidations waiting for Redis or the bus to come back.', '{invalidation}', [], (observe) => {
  for (const cache of live.keys()) observe(cache.stats().pendingInvalidations, {});
});
gauge('kysely_scale.cache.l1.suspended', 'kysely_scale_cache_l1_suspended', '1 while L1 is bypassed because the bus went silent.', '1', [], (observe) => {
  for (const cache of live.keys()) observe(cache.stats().bus.l1Suspended ? 1 : 0, {});
});
gauge('kysely_scale.cache.l1.entries', 'kysely_scale_cache_l1_entries', 'Entries held in L1, by policy.', '{entry}', [POLICY], (observe) => {
  for (const cache of live.keys()) for (const [policy, p] of Object.entries(cache.stats().policies)) observe(p.l1.size ?? 0, { [POLICY]: policy });
});
gauge('kysely_scale.cache.breaker.state', 'kysely_scale_cache_breaker_state', '1 for the state each L2 server breaker is in (closed, open, halfOpen).', '1', [SERVER, STATE], (observe) => {
  for (const health of live.values()) {
    for (const [server, state] of Object.entries(health())) {
      for (const s of ['closed', 'open', 'halfOpen'] as const) observe(state === s ? 1 : 0, { [SERVER]: server, [STATE]: s });
    }
  }
});

/** Starts reporting a cache's statistics (its constructor calls it); returns the function that stops (its `close()` calls it). */
export function trackCache(cache: ObservedCache, breakers: () => Readonly<Record<string, BreakerState>>): () => void {
  live.set(cache, breakers);
  return () => {
    live.delete(cache);
  };
}

/** A cache call's span, waiting for the tier that answers it. */
interface PendingCall {
  readonly span: Span;
  tier: string | undefined;
}

/** Calls in flight per cache, by `policy` + key. */
const waiting = new WeakMap<ObservedCache, Map<string, PendingCall[]>>();

function listenForTiers(cache: ObservedCache): Map<string, PendingCall[]> {
  let byKey = waiting.get(cache);
  if (byKey !== undefined) return byKey;
  const created = new Map<string, PendingCall[]>();
  byKey = created;
  waiting.set(cache, created);
  cache.events.on('hit', ({ policy, key, tier }) => {
    for (const call of created.get(`${policy}\0${key}`) ?? []) call.tier ??= tier;
  });
  return created;
}

/**
 * Runs one cache call (`get`, `getOrLoad`, `set`) of `policy` for `key`, in a span when tracing is
 * on; otherwise `run()` unchanged. The span says which tier answered (`l1`, `l2`), or `loader` when
 * getOrLoad loaded it, `none` when get found nothing.
 */
export function observeCacheCall<T>(cache: ObservedCache, operation: 'get' | 'getOrLoad' | 'set', policy: string, key: string, run: () => Promise<T>): Promise<T> {
  if (!tracingActive()) return run();
  const span = telemetryTracer().startSpan(`cache ${operation}`, { kind: SpanKind.INTERNAL, attributes: { [POLICY]: policy, 'kysely_scale.cache.operation': operation } });
  if (!span.isRecording()) {
    span.end();
    return run();
  }
  const byKey = listenForTiers(cache);
  const id = `${policy}\0${key}`;
  const call: PendingCall = { span, tier: undefined };
  byKey.set(id, [...(byKey.get(id) ?? []), call]);
  const done = (error: unknown): void => {
    const left = (byKey.get(id) ?? []).filter((c) => c !== call);
    if (left.length === 0) byKey.delete(id);
    else byKey.set(id, left);
    if (operation !== 'set') {
      const tier = call.tier ?? (operation === 'getOrLoad' && error === undefined ? 'loader' : 'none');
      span.setAttributes({ [TIER]: tier, [HIT]: call.tier !== undefined });
    }
    if (error !== undefined) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  };
  let result: Promise<T>;
  try {
    result = run();
  } catch (error) {
    done(error);
    throw error;
  }
  return result.then(
    (value) => {
      done(undefined);
      return value;
    },
    (error: unknown) => {
      done(error ?? new Error('cache call failed'));
      throw error;
    },
  );
}
