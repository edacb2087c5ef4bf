import { requireInteger, requireKnownKeys, requireObject } from '../kernel/validate';

/** Options of {@link HotKeyTracker}. */
export interface HotKeyTrackerOptions {
  /**
   * Keys tracked at most (space-saving top-k); memory stays bounded by this.
   * @default 64
   */
  capacity?: number;
  /**
   * Counts halve after this long without accesses, so yesterday's hot key cools down.
   * @default 60_000
   */
  halfLifeMillis?: number;
  /**
   * Record one access in this many (each sample counts for that many); keeps the hit path cheap.
   * @default 16
   */
  sampleEvery?: number;
}

/** Defaults of {@link HotKeyTrackerOptions}. */
export const HOT_KEY_TRACKER_DEFAULTS: Readonly<Required<HotKeyTrackerOptions>> = Object.freeze({
  capacity: 64,
  halfLifeMillis: 60_000,
  sampleEvery: 16,
});

/** A tracked key and its estimated access rate. */
export interface HotKey {
  readonly policy: string;
  readonly key: string;
  /** Estimated accesses per minute (decayed; over-estimates by at most the count it inherited when it entered). */
  readonly perMinute: number;
}

interface Counter {
  policy: string;
  key: string;
  count: number;
  at: number;
}

/**
 * Finds the most accessed keys in bounded memory: a space-saving top-k whose counts decay
 * exponentially with an injected clock. A new key replaces the smallest counter and inherits its
 * count (the space-saving rule), so a truly hot key is never missed.
 * @internal
 */
export class HotKeyTracker {
  private readonly capacity: number;
  private readonly halfLife: number;
  readonly sampleEvery: number;
  private readonly counters = new Map<string, Counter>();

  constructor(options: HotKeyTrackerOptions = {}) {
    requireKnownKeys('hotKeys', requireObject('hotKeys', options), Object.keys(HOT_KEY_TRACKER_DEFAULTS));
    this.capacity = requireInteger('hotKeys.capacity', options.capacity ?? HOT_KEY_TRACKER_DEFAULTS.capacity, 1);
    this.halfLife = requireInteger('hotKeys.halfLifeMillis', options.halfLifeMillis ?? HOT_KEY_TRACKER_DEFAULTS.halfLifeMillis, 1);
    this.sampleEvery = requireInteger('hotKeys.sampleEvery', options.sampleEvery ?? HOT_KEY_TRACKER_DEFAULTS.sampleEvery, 1);
  }

  private decayed(c: Counter, now: number): number {
    return now <= c.at ? c.count : c.count * Math.pow(2, -(now - c.at) / this.halfLife);
  }

  /** Records `weight` accesses (the caller samples one in `sampleEvery` and passes that as weight). */
  record(policy: string, key: string, now: number, weight = this.sampleEvery): void {
    const id = `${policy}\u0000${key}`;
    const c = this.counters.get(id);
    if (c !== undefined) {
      c.count = this.decayed(c, now) + weight;
      c.at = now;
      return;
    }
    if (this.counters.size < this.capacity) {
      this.counters.set(id, { policy, key, count: weight, at: now });
      return;
    }
    let minId = '';
    let min = Infinity;
    for (const [cid, x] of this.counters) {
      const d = this.decayed(x, now);
      if (d < min) {
        min = d;
        minId = cid;
      }
    }
    this.counters.delete(minId);
    this.counters.set(id, { policy, key, count: min + weight, at: now });
  }

  /** Tracked keys by estimated rate, highest first. */
  top(now: number, limit = this.capacity): HotKey[] {
    const perMinute = (Math.LN2 / this.halfLife) * 60_000;
    return [...this.counters.values()]
      .map((c) => ({ policy: c.policy, key: c.key, perMinute: this.decayed(c, now) * perMinute }))
      .sort((a, b) => b.perMinute - a.perMinute)
      .slice(0, limit);
  }

  /** Number of keys tracked (never above `capacity`). */
  get size(): number {
    return this.counters.size;
  }
}
