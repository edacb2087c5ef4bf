/**
 * The load behind a miss and its versioned fill: the key's version and the epochs are read before
 * the loader runs, the L2 fill is a compare-and-set on that version, and L1 is filled only when no
 * invalidation overtook the load. A load that raced an invalidation still answers its callers.
 */
import type { Clock } from '../kernel/clock';
import type { CallBudget } from './cache-call-budget';
import type { CacheCoherence } from './cache-coherence';
import { encodeEntry } from './cache-entry';
import type { CacheEventHub } from './cache-events';
import type { PendingInvalidations } from './cache-pending-invalidations';
import type { PolicyState } from './cache-policy-state';
import type { CacheValueCodec } from './cache-value-codec';
import type { L2Tier, VersionToken } from './l2-tier';
import type { Flight } from './single-flight';

/** @internal */
export class CacheFill {
  constructor(
    private readonly l2: L2Tier | undefined,
    private readonly coherence: CacheCoherence,
    private readonly pending: PendingInvalidations,
    private readonly codec: CacheValueCodec,
    private readonly hub: CacheEventHub,
    private readonly clock: Clock,
  ) {}

  /**
   * Runs `loader` and fills the tiers (with `forceFill`, whatever `cacheAside` says). Loader errors
   * are counted and rethrown unchanged.
   */
  async loadAndFill(
    st: PolicyState,
    key: string,
    loader: () => Promise<unknown>,
    tags: readonly string[],
    flight: Flight<unknown>,
    forceFill: boolean,
    budget: CallBudget,
  ): Promise<unknown> {
    const name = st.policy.name;
    // Versions and epochs are read before the loader runs: a later invalidation changes them, and the fill then fails.
    const [version, stamps] = await Promise.all([this.readVersion(st, key, budget), this.coherence.stampsForFill(st, tags, budget)]);
    st.loads++;
    let value: unknown;
    budget.pause(); // the loader's time is its own (the policy's timeouts bound it)
    try {
      value = await loader();
    } catch (e) {
      st.loadErrors++;
      throw e;
    } finally {
      budget.resume();
    }
    if (value === undefined || (!st.policy.cacheAside && !forceFill)) return value;
    let payload: string;
    try {
      payload = this.codec.serialize(value);
    } catch (error) {
      this.hub.emitter.emit('error', { policy: name, key, error });
      return value;
    }
    const now = this.clock.now();
    const freshUntil = now + st.policy.ttlMillis;
    const staleUntil = freshUntil + st.policy.graceMillis;
    if (st.policy.useL2 && version !== null && stamps.ns !== undefined && this.pending.l2Usable(st, key)) {
      try {
        const entry = encodeEntry(payload, freshUntil, staleUntil, stamps.ns, stamps.tags);
        const ok = await budget.wait(() => this.l2!.fill(`${name}:${key}`, version, entry, staleUntil - now), this.l2!.commandTimeoutMillis);
        if (!ok) {
          st.staleFillsPrevented++;
          return value;
        }
        st.l2c.writes++;
      } catch (error) {
        this.hub.l2Failed(st, key, error);
      }
    }
    if (st.l1 !== null) {
      if (flight.stale) st.staleFillsPrevented++;
      else st.l1.set(key, this.codec.l1Entry(payload, freshUntil, staleUntil, stamps.ns ?? 0, stamps.tags));
    }
    return value;
  }

  private async readVersion(st: PolicyState, key: string, budget: CallBudget): Promise<VersionToken | null> {
    if (!st.policy.useL2 || !this.pending.l2Usable(st, key)) return null;
    try {
      return await budget.wait(() => this.l2!.readVersion(`${st.policy.name}:${key}`), this.l2!.commandTimeoutMillis);
    } catch (error) {
      this.hub.l2Failed(st, key, error);
      return null;
    }
  }
}
