/**
 * Invalidations (and versioned writes) that Redis or the bus did not take, kept until they can be
 * replayed. While a key waits here it bypasses L2 (Redis may still hold its old value). The queue
 * is bounded: beyond `maxPendingInvalidations`, whole policies bypass L2 until their namespace is
 * bumped, which invalidates whatever the forgotten entries covered.
 *
 * Replay never waits for a caller: it starts when Redis or the bus is known to be back (a breaker
 * probe succeeded, the bus reconnected, an L2 read answered) and, as a fallback, on a timer while
 * anything waits (every 100 ms, backing off to 500 ms while attempts make no progress). Before,
 * an instance that went idle kept its queue, and the stale value in L2, until its next call.
 */
import type { Cancel, Clock } from '../kernel/clock';
import type { PolicyRegistry, PolicyState } from './cache-policy-state';

/**
 * A write-through whose L2 write did not happen, replayed as the same versioned write (its version
 * orders it against any newer write that landed meanwhile).
 * @internal
 */
export interface PendingWrite {
  readonly payload: string;
  /** The source's version, decimal text. */
  readonly version: string;
}

/**
 * How a pending invalidation is replayed (the write path's invalidations and versioned writes).
 * @internal
 */
export interface PendingReplay {
  namespace(st: PolicyState): Promise<void>;
  tags(tags: readonly string[]): Promise<void>;
  keys(st: PolicyState, keys: readonly string[]): Promise<void>;
  write(st: PolicyState, key: string, write: PendingWrite): Promise<void>;
}

const RETRY_MIN_MILLIS = 100;
const RETRY_MAX_MILLIS = 500;

/** @internal */
export class PendingInvalidations {
  /** Per policy name, per key: a pending invalidation (`null`) or a pending versioned write. */
  private readonly keys = new Map<string, Map<string, PendingWrite | null>>();
  private readonly tags = new Set<string>();
  private readonly namespaces = new Set<string>();
  private pendingCount = 0;
  private flushing: Promise<void> | null = null;
  private closed = false;
  private retry: Cancel | null = null;
  private retryMillis = RETRY_MIN_MILLIS;

  /**
   * @param hasBus whether a bus tells other instances (then invalidations of L1-only policies are
   *   kept too, to be published again)
   */
  constructor(
    private readonly registry: PolicyRegistry,
    private readonly maxPending: number,
    private readonly hasBus: boolean,
    private readonly replay: PendingReplay,
    private readonly clock: Clock,
  ) {}

  /** Keys, tags and namespaces waiting (each distinct one counted once). */
  get count(): number {
    return this.pendingCount;
  }

  /** Whether L2 may be used for the policy (and `key`): not while it is bypassed or the key's invalidation waits. */
  l2Usable(st: PolicyState, key: string | undefined): boolean {
    if (!st.policy.useL2 || st.l2Bypass) return false;
    if (key !== undefined && this.pendingCount > 0 && this.keys.get(st.policy.name)?.has(key) === true) return false;
    return true;
  }

  /** Queues invalidations of `keys` (replacing a pending write of the same key). */
  addKeys(st: PolicyState, keys: readonly string[]): void {
    if (!st.policy.useL2 && !this.hasBus) return;
    for (const k of keys) if (!this.put(st, k, null)) return;
    this.schedule();
  }

  /** Queues a versioned write; an earlier pending invalidation of the key is subsumed (the write bumps the key's version too). */
  addWrite(st: PolicyState, key: string, write: PendingWrite): void {
    const existing = this.keys.get(st.policy.name)?.get(key);
    if (existing != null && !newer(write.version, existing.version)) return;
    if (this.put(st, key, write)) this.schedule();
  }

  /** Records one key's entry; false once the queue overflowed (the policy is then distrusted as a whole). */
  private put(st: PolicyState, key: string, entry: PendingWrite | null): boolean {
    let map = this.keys.get(st.policy.name);
    if (map === undefined) this.keys.set(st.policy.name, (map = new Map()));
    if (map.has(key)) {
      map.set(key, entry);
      return true;
    }
    if (this.pendingCount >= this.maxPending) {
      // Too many to remember one by one: distrust the whole policy in L2 until its namespace is bumped.
      st.l2Bypass = true;
      this.addNamespace(st.policy.name);
      return false;
    }
    map.set(key, entry);
    this.pendingCount++;
    return true;
  }

  /**
   * Remembers tag invalidations Redis or the bus did not take (each distinct tag counts once). Beyond
   * `maxPendingInvalidations`, every policy that uses L2 is distrusted there until its namespace is
   * bumped, which invalidates whatever the forgotten tags covered.
   */
  addTags(tags: readonly string[]): void {
    for (const t of tags) {
      if (this.tags.has(t)) continue;
      if (this.pendingCount >= this.maxPending) {
        for (const st of this.registry.values()) {
          if (!st.policy.useL2 && !this.hasBus) continue;
          st.l2Bypass = st.policy.useL2;
          this.addNamespace(st.policy.name);
        }
        return;
      }
      this.tags.add(t);
      this.pendingCount++;
    }
    this.schedule();
  }

  addNamespace(name: string): void {
    if (!this.namespaces.has(name)) (this.namespaces.add(name), this.pendingCount++);
    this.schedule();
  }

  /**
   * Another instance invalidated a namespace: a pending write of that policy must not come back
   * afterwards (it would carry the new epoch); it is replayed as an invalidation instead.
   */
  demoteWrites(policy: string): void {
    const map = this.keys.get(policy);
    if (map !== undefined) for (const k of map.keys()) map.set(k, null);
  }

  /** Replays what waits (namespaces, then tags, then keys); called when Redis or the bus comes back. */
  flush(): Promise<void> {
    if (this.flushing !== null || this.pendingCount === 0 || this.closed) return this.flushing ?? Promise.resolve();
    this.retry?.();
    this.retry = null;
    const before = this.pendingCount;
    this.flushing = (async () => {
      try {
        await this.replayAll();
      } finally {
        this.flushing = null;
        // What failed again was queued again: try later, backing off while nothing gets through.
        this.retryMillis = this.pendingCount >= before ? Math.min(this.retryMillis * 2, RETRY_MAX_MILLIS) : RETRY_MIN_MILLIS;
        this.schedule();
      }
    })();
    return this.flushing;
  }

  /** Something says Redis or the bus is back: replay now, and retry at the shortest interval after. */
  recovered(): Promise<void> {
    this.retryMillis = RETRY_MIN_MILLIS;
    return this.flush();
  }

  private async replayAll(): Promise<void> {
    for (const name of [...this.namespaces]) {
      const st = this.registry.get(name);
      this.namespaces.delete(name);
      this.pendingCount--;
      // The namespace bump invalidates every key of the policy: their own entries are not needed.
      const map = this.keys.get(name);
      if (map !== undefined) this.pendingCount -= map.size;
      this.keys.delete(name);
      await this.replay.namespace(st);
    }
    for (const tag of [...this.tags]) {
      this.tags.delete(tag);
      this.pendingCount--;
      await this.replay.tags([tag]);
    }
    for (const [name, map] of [...this.keys]) {
      const st = this.registry.get(name);
      this.keys.delete(name);
      this.pendingCount -= map.size;
      const invalidations: string[] = [];
      const writes: [string, PendingWrite][] = [];
      for (const [k, w] of map) {
        if (w === null) invalidations.push(k);
        else writes.push([k, w]);
      }
      if (invalidations.length > 0) await this.replay.keys(st, invalidations);
      for (const [k, w] of writes) await this.replay.write(st, k, w);
    }
  }

  private schedule(): void {
    if (this.retry !== null || this.flushing !== null || this.closed || this.pendingCount === 0) return;
    this.retry = this.clock.setTimeout(() => {
      this.retry = null;
      void this.flush();
    }, this.retryMillis);
  }

  /** Stops replaying; resolves once a replay that is running has ended. */
  async close(): Promise<void> {
    this.closed = true;
    this.retry?.();
    this.retry = null;
    await this.flushing?.catch(() => {});
  }
}

/** Whether decimal version `a` is greater than `b` (both non-negative integers without leading zeros). */
function newer(a: string, b: string): boolean {
  return a.length !== b.length ? a.length > b.length : a > b;
}
