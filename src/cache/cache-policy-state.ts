/** The policies of one cache, resolved, with the runtime state each one keeps. */
import { UnknownCachePolicyError } from './cache-errors';
import type { CachePolicy } from './cache-policy';
import { TierCounters } from './cache-stats';
import { MemoryTier } from './memory-tier';

/**
 * One policy at run time: its L1, its counters, and what it knows of its namespace in Redis.
 * @internal
 */
export class PolicyState {
  readonly l1: MemoryTier | null;
  readonly l1c = new TierCounters();
  readonly l2c = new TierCounters();
  loads = 0;
  loadErrors = 0;
  staleServed = 0;
  staleFillsPrevented = 0;
  /** The namespace epoch in Redis as last seen; `undefined` until read (and after a bus reconnect). */
  nsEpoch: number | undefined = undefined;
  /** Bumped by every invalidation of this policy; batch backfills skip when it moved. */
  invalidationSeq = 0;
  /** Whether the policy bypasses L2 until its namespace can be bumped (pending queue overflowed). */
  l2Bypass = false;
  constructor(readonly policy: CachePolicy) {
    this.l1 = policy.useL1 ? new MemoryTier({ maxEntries: policy.maxEntries, maxBytes: policy.maxBytes }) : null;
  }
}

/**
 * The policy states of one cache by name, fixed at construction.
 * @internal
 */
export class PolicyRegistry {
  private readonly states = new Map<string, PolicyState>();
  /** Whether any policy uses L2 (tag invalidations then go to Redis). */
  readonly anyUsesL2: boolean;

  constructor(policies: Iterable<CachePolicy>) {
    for (const p of policies) this.states.set(p.name, new PolicyState(p));
    this.anyUsesL2 = [...this.states.values()].some((s) => s.policy.useL2);
  }

  /** The state of `name`; {@link UnknownCachePolicyError} when it is not configured. */
  get(name: string): PolicyState {
    const s = this.states.get(name);
    if (s === undefined) throw new UnknownCachePolicyError(name, [...this.states.keys()]);
    return s;
  }

  /** The state of `name`, or `undefined` (bus messages may name policies this instance lacks). */
  find(name: string): PolicyState | undefined {
    return this.states.get(name);
  }

  get names(): readonly string[] {
    return [...this.states.keys()];
  }

  values(): IterableIterator<PolicyState> {
    return this.states.values();
  }
}
