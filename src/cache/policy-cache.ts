/** A handle on one policy of a `TieredCache`, without the policy lookup on every call (the hot path). */
import { cacheKey, cacheKeys, type CacheKey } from './cache-key';
import type { PolicyState } from './cache-policy-state';
import type { CacheReadPath } from './cache-read-path';
import type { CacheWritePath } from './cache-write-path';
import { loadTags, type LoadOptions, type SetOptions } from './tiered-cache-options';

/** A `TieredCache` bound to one policy (from `cache.forPolicy(name)`); the same semantics as its methods. */
export class PolicyCache<T = unknown> {
  /** @internal */
  constructor(
    private readonly reads: CacheReadPath,
    private readonly writes: CacheWritePath,
    private readonly st: PolicyState,
  ) {}

  /** The policy's name. */
  get name(): string {
    return this.st.policy.name;
  }
  /** Synchronous L1 lookup (see `TieredCache.peek`). */
  peek(key: CacheKey): T | undefined {
    return this.reads.peek(this.st, typeof key === 'string' ? key : cacheKey(key)) as T | undefined;
  }
  /** L1, then L2 (see `TieredCache.get`). */
  get(key: CacheKey): Promise<T | undefined> {
    return this.reads.get(this.st, typeof key === 'string' ? key : cacheKey(key)) as Promise<T | undefined>;
  }
  /** L1 → L2 → `loader` (see `TieredCache.getOrLoad`). */
  getOrLoad(key: CacheKey, loader: () => Promise<T>, options?: LoadOptions): Promise<T> {
    return this.reads.getOrLoad(this.st, typeof key === 'string' ? key : cacheKey(key), loader, loadTags(options), false) as Promise<T>;
  }
  /** Values of several keys (see `TieredCache.getMany`). */
  getMany(keys: readonly CacheKey[], loader?: (key: string) => Promise<T>): Promise<(T | undefined)[]> {
    return this.reads.getMany(this.st, cacheKeys(keys), loader) as Promise<(T | undefined)[]>;
  }
  /** Writes a value (see `TieredCache.set`). */
  set(key: CacheKey, value: T, options?: SetOptions<T>): Promise<void> {
    return this.writes.set(this.st, cacheKey(key), value, options ?? {});
  }
  /** Invalidates keys everywhere (see `TieredCache.invalidate`). */
  invalidate(keys: readonly CacheKey[]): Promise<void> {
    return this.writes.invalidateKeys(this.st, cacheKeys(keys));
  }
}
