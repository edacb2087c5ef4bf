import { LRUCache } from 'lru-cache';
import { requireInteger, requireKnownKeys, requireObject } from '../kernel/validate';

/** A tag and the tag's invalidation epoch seen when the entry's load started. */
export type TagStamp = readonly [tag: string, epoch: number];

/** One L1 entry. Plain fields so the hit path reads them without calls. */
export interface CacheEntry {
  /** The value, as it comes back from the serializer (identical to an L2 read). */
  readonly value: unknown;
  /** Serialized size in bytes. */
  readonly size: number;
  /** Fresh until this time (clock millis). */
  readonly freshUntil: number;
  /** Servable as stale (grace) until this time; equals `freshUntil` without grace. */
  readonly staleUntil: number;
  /** Namespace (policy) epoch seen when the load started; older than the current epoch means invalidated. */
  readonly nsEpoch: number;
  /** Tag epochs seen when the load started; `null` when untagged. */
  readonly tags: readonly TagStamp[] | null;
}

/** Options of {@link MemoryTier}. */
export interface MemoryTierOptions {
  /**
   * Most entries kept.
   * @default 10_000
   */
  maxEntries?: number;
  /**
   * Most bytes kept: the sum of each entry's key length and serialized value size.
   * @default 67_108_864
   */
  maxBytes?: number;
}

/** Defaults of {@link MemoryTierOptions}. */
export const MEMORY_TIER_DEFAULTS: Readonly<Required<MemoryTierOptions>> = Object.freeze({ maxEntries: 10_000, maxBytes: 67_108_864 });

/**
 * L1: an `lru-cache` bounded by entry count and bytes. Expiry is checked against the caller's
 * clock reading (not lru-cache's own TTL) so grace periods and injected clocks work the same way.
 */
export class MemoryTier {
  private readonly lru: LRUCache<string, CacheEntry>;
  /** Entries dropped to respect `maxEntries`/`maxBytes`. */
  evictions = 0;
  /** Entries dropped because they were past `staleUntil` when read. */
  expirations = 0;
  /** While suspended, the tier holds nothing and `set` stores nothing. */
  private suspended = false;

  constructor(options: MemoryTierOptions = {}) {
    requireKnownKeys('memoryTier', requireObject('memoryTier', options), Object.keys(MEMORY_TIER_DEFAULTS));
    const maxEntries = requireInteger('memoryTier.maxEntries', options.maxEntries ?? MEMORY_TIER_DEFAULTS.maxEntries, 1);
    const maxBytes = requireInteger('memoryTier.maxBytes', options.maxBytes ?? MEMORY_TIER_DEFAULTS.maxBytes, 1);
    this.lru = new LRUCache<string, CacheEntry>({
      max: maxEntries,
      maxSize: maxBytes,
      // The key is held in memory as much as the value: it counts too (200 keys of 1 MB once used
      // ~170 MB while L1 reported 336 bytes). lru-cache refuses sizes < 1.
      sizeCalculation: (e, key) => Math.max(1, e.size + key.length),
      disposeAfter: (_v, _k, reason) => {
        if (reason === 'evict') this.evictions++;
      },
    });
  }

  /** The entry if it is still servable (fresh or within grace) at `now`; drops expired ones. */
  get(key: string, now: number): CacheEntry | undefined {
    const e = this.lru.get(key);
    if (e === undefined) return undefined;
    if (now >= e.staleUntil) {
      this.lru.delete(key);
      this.expirations++;
      return undefined;
    }
    return e;
  }

  set(key: string, entry: CacheEntry): void {
    if (!this.suspended) this.lru.set(key, entry);
  }

  /** Empties the tier and stores nothing until {@link MemoryTier.resume} (the cache's bus stayed silent). */
  suspend(): void {
    this.suspended = true;
    this.lru.clear();
  }

  /** Stores entries again after {@link MemoryTier.suspend}. */
  resume(): void {
    this.suspended = false;
  }

  delete(key: string): boolean {
    return this.lru.delete(key);
  }

  clear(): void {
    this.lru.clear();
  }

  /** Entries currently held (expired ones are dropped lazily). */
  get size(): number {
    return this.lru.size;
  }

  /** Bytes currently held: keys and serialized values. */
  get bytes(): number {
    return this.lru.calculatedSize;
  }

  /** Iterates entries from most to least recently used, without touching recency. */
  *entries(): IterableIterator<[string, CacheEntry]> {
    yield* this.lru.entries();
  }
}
