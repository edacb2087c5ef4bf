/**
 * Insight into a running cache: statistics per policy and tier, the hottest keys, and suggestions
 * drawn from them (the original design's `IntelligentCacheManager`).
 */
import type { Clock } from '../kernel/clock';
import type { CacheBusLink } from './cache-bus-link';
import type { PendingInvalidations } from './cache-pending-invalidations';
import type { PolicyRegistry } from './cache-policy-state';
import { rate, tierStats, type CacheStats, type PolicyStats } from './cache-stats';
import type { HotKey, HotKeyTracker } from './hot-key-tracker';

/** A suggestion from access statistics. */
export interface CacheSuggestion {
  readonly kind: 'hot-key-add-l1' | 'hot-key-longer-ttl' | 'cold-keys-shorter-ttl' | 'l1-too-small';
  readonly policy: string;
  readonly key?: string;
  readonly message: string;
}

/** @internal */
export class CacheAdvisor {
  constructor(
    private readonly registry: PolicyRegistry,
    private readonly hot: HotKeyTracker | null,
    private readonly bus: CacheBusLink,
    private readonly pending: PendingInvalidations,
    private readonly clock: Clock,
  ) {}

  /** Per-policy, per-tier statistics. */
  stats(): CacheStats {
    const policies: Record<string, PolicyStats> = {};
    let hits = 0;
    let misses = 0;
    for (const st of this.registry.values()) {
      const h = st.l1c.hits + st.l2c.hits;
      const reads = st.policy.useL1 ? st.l1c.hits + st.l1c.misses : st.l2c.hits + st.l2c.misses;
      hits += h;
      misses += reads - h;
      policies[st.policy.name] = Object.freeze({
        l1: tierStats(st.l1c, st.l1 ? { size: st.l1.size, bytes: st.l1.bytes, evictions: st.l1.evictions } : { size: 0, bytes: 0, evictions: 0 }),
        l2: tierStats(st.l2c),
        loads: st.loads,
        loadErrors: st.loadErrors,
        staleServed: st.staleServed,
        staleFillsPrevented: st.staleFillsPrevented,
        hitRate: rate(h, reads - h),
      });
    }
    return Object.freeze({
      policies: Object.freeze(policies),
      totalHits: hits,
      totalMisses: misses,
      hitRate: rate(hits, misses),
      bus: Object.freeze({
        received: this.bus.received,
        published: this.bus.published,
        reconnects: this.bus.reconnects,
        silences: this.bus.silences,
        l1Suspended: this.bus.l1Suspended,
      }),
      pendingInvalidations: this.pending.count,
    });
  }

  /** The hottest keys (estimated accesses per minute), bounded memory. */
  hotKeys(limit = 10): HotKey[] {
    return this.hot === null ? [] : this.hot.top(this.clock.now(), limit);
  }

  /**
   * Suggestions from access statistics: hot keys that should be in L1 or live longer, policies whose
   * L1 entries are mostly never read (shorter TTL), L1 too small for its working set.
   * @param hotPerMinute accesses per minute above which a key is hot (the original design used 10).
   */
  suggestions(hotPerMinute = 10): CacheSuggestion[] {
    const out: CacheSuggestion[] = [];
    const now = this.clock.now();
    for (const h of this.hotKeys(64)) {
      if (h.perMinute < hotPerMinute) continue;
      const st = this.registry.find(h.policy);
      if (st === undefined) continue;
      if (!st.policy.useL1) {
        out.push({ kind: 'hot-key-add-l1', policy: h.policy, key: h.key, message: `Hot key '${h.key}' (${h.perMinute.toFixed(0)}/min) in policy '${h.policy}' is served from Redis on every read; add 'l1' to its levels` });
      } else if (st.policy.ttlMillis < 60_000) {
        out.push({ kind: 'hot-key-longer-ttl', policy: h.policy, key: h.key, message: `Hot key '${h.key}' (${h.perMinute.toFixed(0)}/min) in policy '${h.policy}' expires every ${st.policy.ttlMillis} ms; a longer ttlMillis saves loads` });
      }
    }
    for (const st of this.registry.values()) {
      const name = st.policy.name;
      if (st.l1 !== null && st.l1.evictions > st.policy.maxEntries && rate(st.l1c.hits, st.l1c.misses) < 0.5) {
        out.push({ kind: 'l1-too-small', policy: name, message: `Policy '${name}' evicted ${st.l1.evictions} L1 entries with an L1 hit rate of ${(rate(st.l1c.hits, st.l1c.misses) * 100).toFixed(0)}%; raise maxEntries or maxBytes` });
      }
      if (st.l1 !== null && st.l1.size >= 20) {
        // Cold: entries past half their lifetime whose key is not among the tracked hot keys.
        const hot = new Set(this.hotKeys(64).filter((h) => h.policy === name).map((h) => h.key));
        let sampled = 0;
        let cold = 0;
        for (const [k, e] of st.l1.entries()) {
          if (++sampled > 1000) break;
          if (now - (e.freshUntil - st.policy.ttlMillis) > st.policy.ttlMillis / 2 && !hot.has(k)) cold++;
        }
        if (cold / Math.min(sampled, 1000) > 0.8 && rate(st.l1c.hits, st.l1c.misses) < 0.2) {
          out.push({ kind: 'cold-keys-shorter-ttl', policy: name, message: `Policy '${name}': ${cold} of ${Math.min(sampled, 1000)} sampled L1 entries are cold and the L1 hit rate is low; consider a shorter ttlMillis or cacheAside: false` });
        }
      }
    }
    return out;
  }
}
