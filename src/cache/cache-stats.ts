/**
 * Counters of one tier of one policy. Plain mutable fields: the hit path increments them directly.
 * @internal
 */
export class TierCounters {
  hits = 0;
  misses = 0;
  writes = 0;
  invalidations = 0;
  /** Operations that failed because the tier was unavailable (L2 only). */
  errors = 0;
}

/** Statistics of one tier, as reported. */
export interface TierStats {
  readonly hits: number;
  readonly misses: number;
  /** hits / (hits + misses); 0 before any read. */
  readonly hitRate: number;
  readonly writes: number;
  readonly invalidations: number;
  readonly errors: number;
  /** Entries held (L1 only; `null` for L2, whose size Redis reports). */
  readonly size: number | null;
  /** Serialized bytes held (L1 only). */
  readonly bytes: number | null;
  /** Entries evicted for space (L1 only). */
  readonly evictions: number | null;
}

/** Statistics of one policy (the original design's `get_cache_stats`). */
export interface PolicyStats {
  readonly l1: TierStats;
  readonly l2: TierStats;
  /** Loader calls (one per single-flight). */
  readonly loads: number;
  readonly loadErrors: number;
  /** Stale values served within grace (stale-while-revalidate or fail-safe). */
  readonly staleServed: number;
  /** Fills refused because an invalidation happened during the load. */
  readonly staleFillsPrevented: number;
  /** Reads answered by any tier / all reads. */
  readonly hitRate: number;
}

/** Statistics of the whole cache. */
export interface CacheStats {
  readonly policies: Readonly<Record<string, PolicyStats>>;
  readonly totalHits: number;
  readonly totalMisses: number;
  readonly hitRate: number;
  /**
   * Bus messages received from other instances and published; times the bus reconnected (L1
   * cleared); times it stayed silent past `busSilenceMillis` (L1 cleared and bypassed), and whether
   * L1 is bypassed now.
   */
  readonly bus: { readonly received: number; readonly published: number; readonly reconnects: number; readonly silences: number; readonly l1Suspended: boolean };
  /** Invalidations waiting for Redis to come back. */
  readonly pendingInvalidations: number;
}

/** @internal */
export function rate(hits: number, misses: number): number {
  const total = hits + misses;
  return total === 0 ? 0 : hits / total;
}

/** @internal */
export function tierStats(c: TierCounters, l1?: { size: number; bytes: number; evictions: number }): TierStats {
  return Object.freeze({
    hits: c.hits,
    misses: c.misses,
    hitRate: rate(c.hits, c.misses),
    writes: c.writes,
    invalidations: c.invalidations,
    errors: c.errors,
    size: l1 ? l1.size : null,
    bytes: l1 ? l1.bytes : null,
    evictions: l1 ? l1.evictions : null,
  });
}
