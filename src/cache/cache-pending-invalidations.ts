/**
 * Invalidations Redis or the bus did not take, kept until either answers again and then replayed.
 * While a key waits here it bypasses L2 (Redis may still hold its old value). The queue is
 * bounded: beyond `maxPendingInvalidations`, whole policies bypass L2 until their namespace is
 * bumped, which invalidates whatever the forgotten entries covered.
 */
import type { PolicyRegistry, PolicyState } from './cache-policy-state';

/**
 * How a pending invalidation is replayed (the write path's invalidations).
 * @internal
 */
export interface PendingReplay {
  namespace(st: PolicyState): Promise<void>;
  tags(tags: readonly string[]): Promise<void>;
  keys(st: PolicyState, keys: readonly string[]): Promise<void>;
}

/** @internal */
export class PendingInvalidations {
  /** Keys by policy name. */
  private readonly keys = new Map<string, Set<string>>();
  private readonly tags = new Set<string>();
  private readonly namespaces = new Set<string>();
  private pendingCount = 0;
  private flushing: Promise<void> | null = null;
  private closed = false;

  /**
   * @param hasBus whether a bus tells other instances (then invalidations of L1-only policies are
   *   kept too, to be published again)
   */
  constructor(
    private readonly registry: PolicyRegistry,
    private readonly maxPending: number,
    private readonly hasBus: boolean,
    private readonly replay: PendingReplay,
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

  addKeys(st: PolicyState, keys: readonly string[]): void {
    if (!st.policy.useL2 && !this.hasBus) return;
    let set = this.keys.get(st.policy.name);
    if (set === undefined) this.keys.set(st.policy.name, (set = new Set()));
    for (const k of keys) {
      if (this.pendingCount >= this.maxPending) {
        // Too many to remember one by one: distrust the whole policy in L2 until its namespace is bumped.
        st.l2Bypass = true;
        this.addNamespace(st.policy.name);
        return;
      }
      if (!set.has(k)) {
        set.add(k);
        this.pendingCount++;
      }
    }
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
  }

  addNamespace(name: string): void {
    if (!this.namespaces.has(name)) (this.namespaces.add(name), this.pendingCount++);
  }

  /** Replays what waits (namespaces, then tags, then keys); called when Redis or the bus comes back. */
  flush(): Promise<void> {
    if (this.flushing !== null || this.pendingCount === 0 || this.closed) return this.flushing ?? Promise.resolve();
    this.flushing = (async () => {
      try {
        for (const name of [...this.namespaces]) {
          const st = this.registry.get(name);
          this.namespaces.delete(name);
          this.pendingCount--;
          this.keys.get(name)?.forEach(() => this.pendingCount--);
          this.keys.delete(name);
          await this.replay.namespace(st);
        }
        for (const tag of [...this.tags]) {
          this.tags.delete(tag);
          this.pendingCount--;
          await this.replay.tags([tag]);
        }
        for (const [name, keys] of [...this.keys]) {
          const st = this.registry.get(name);
          const list = [...keys];
          this.keys.delete(name);
          this.pendingCount -= list.length;
          await this.replay.keys(st, list);
        }
      } finally {
        this.flushing = null;
      }
    })();
    return this.flushing;
  }

  /** Stops replaying; resolves once a replay that is running has ended. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flushing?.catch(() => {});
  }
}
