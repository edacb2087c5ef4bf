/**
 * The read path: the synchronous L1 hit, L1 → L2, and L1 → L2 → loader through one single-flight
 * load per key, with grace (stale-while-revalidate) and the policy's load deadlines; `getMany`
 * and `warmUp` on top.
 */
import type { Clock } from '../kernel/clock';
import type { CallBudgets } from './cache-call-budget';
import { requireInteger, requireKnownKeys, requireObject } from '../kernel/validate';
import { flightKey, type CacheCoherence } from './cache-coherence';
import type { CacheEventHub } from './cache-events';
import type { CacheFill } from './cache-fill';
import type { CacheL2Reads } from './cache-l2-reads';
import { awaitLoad } from './cache-load-deadline';
import type { PendingInvalidations } from './cache-pending-invalidations';
import type { PolicyState } from './cache-policy-state';
import type { HotKeyTracker } from './hot-key-tracker';
import type { CacheEntry } from './memory-tier';
import type { Flight } from './single-flight';
import type { WarmUpResult } from './tiered-cache-options';

const NO_TAGS: readonly string[] = Object.freeze([]);

/** @internal */
export class CacheReadPath {
  private readonly hotMask: number;
  private hotCounter = 0;
  private cachedNow = 0;

  constructor(
    private readonly clock: Clock,
    private readonly coherence: CacheCoherence,
    private readonly pending: PendingInvalidations,
    private readonly l2Reads: CacheL2Reads,
    private readonly fill: CacheFill,
    private readonly hub: CacheEventHub,
    private readonly hot: HotKeyTracker | null,
    private readonly budgets: CallBudgets,
  ) {
    // Sample one access in 2^k (the power of two at or below sampleEvery): a mask test on the hit path.
    this.hotMask = hot === null ? 0 : 2 ** Math.floor(Math.log2(hot.sampleEvery)) - 1;
  }

  /** Synchronous L1 lookup: the fresh value or `undefined`. */
  peek(st: PolicyState, key: string): unknown {
    const l1 = st.l1;
    if (l1 === null) return undefined;
    const now = this.coarseNow();
    const e = l1.get(key, now);
    if (e !== undefined && now < e.freshUntil && (e.tags === null || this.coherence.tagsCurrent(e.tags))) return this.l1Hit(st, key, e, now);
    return undefined;
  }

  /**
   * The clock read once per millisecond on the hit path (as lru-cache's `ttlResolution` does):
   * reading the clock costs as much as the LRU lookup itself. The timer runs only while reads do.
   */
  private coarseNow(): number {
    if (this.cachedNow !== 0) return this.cachedNow;
    this.cachedNow = this.clock.now();
    this.clock.setTimeout(this.clearNow, 1);
    return this.cachedNow;
  }
  private readonly clearNow = (): void => {
    this.cachedNow = 0;
  };

  private l1Hit(st: PolicyState, key: string, e: CacheEntry, now: number): unknown {
    st.l1c.hits++;
    if (this.hot !== null && (++this.hotCounter & this.hotMask) === 0) this.hot.record(st.policy.name, key, now, this.hotMask + 1);
    if (this.hub.listeningHits) this.hub.emitter.emit('hit', { policy: st.policy.name, key, tier: 'l1' });
    return e.value;
  }

  /** L1, then L2 (backfilling L1); `undefined` when neither holds a fresh value. */
  get(st: PolicyState, key: string): Promise<unknown> {
    const v = this.peek(st, key);
    if (v !== undefined) return Promise.resolve(v);
    if (st.l1 !== null) st.l1c.misses++;
    if (!st.policy.useL2) {
      this.hub.miss(st, key);
      return Promise.resolve(undefined);
    }
    const fk = flightKey(st.policy.name, key);
    // A load of the key is running: its value is the answer (as fresh as a read started now).
    const loading = this.coherence.flights.get(fk);
    if (loading !== undefined) return loading.promise;
    // Otherwise one L2 read per key; it has a flight of its own, which a load never joins (a read
    // may find nothing, and a load's callers want a value).
    // Its callers get the value itself (a stale one within grace is not served by `get`).
    return this.coherence.reads.run(fk, NO_TAGS, (f) => this.l2Reads.readValue(st, key, f, this.budgets.start())).promise;
  }

  /** L1 → L2 → `loader`, filling the tiers above (with `forceFill`, whatever `cacheAside` says). */
  async getOrLoad(st: PolicyState, key: string, loader: () => Promise<unknown>, tags: readonly string[], forceFill: boolean): Promise<unknown> {
    const now = this.clock.now();
    let stale: CacheEntry | undefined;
    if (st.l1 !== null) {
      const e = st.l1.get(key, now);
      if (e !== undefined && (e.tags === null || this.coherence.tagsCurrent(e.tags))) {
        if (now < e.freshUntil) return this.l1Hit(st, key, e, now);
        stale = e; // within grace
      }
      st.l1c.misses++;
    }
    const flight = this.coherence.flights.run(flightKey(st.policy.name, key), tags, (f) => this.load(st, key, loader, tags, f, forceFill));
    if (stale === undefined) return this.awaitLoad(st, key, flight, undefined);
    if (st.policy.softTimeoutMillis === 0) {
      // Stale-while-revalidate: answer now, the flight refreshes in the background.
      flight.promise.catch((error) => this.hub.emitter.emit('error', { policy: st.policy.name, key, error }));
      st.staleServed++;
      return stale.value;
    }
    return this.awaitLoad(st, key, flight, stale);
  }

  private awaitLoad(st: PolicyState, key: string, flight: Flight<unknown>, stale: CacheEntry | undefined): Promise<unknown> {
    return awaitLoad(this.clock, st, key, flight, stale, () => {
      if (st.l1 === null) return undefined;
      const cur = st.l1.get(key, this.clock.now());
      return cur !== undefined && (cur.tags === null || this.coherence.tagsCurrent(cur.tags)) ? cur : undefined;
    });
  }

  /** A single-flight load: L2, then the loader, then versioned fills. */
  private async load(st: PolicyState, key: string, loader: () => Promise<unknown>, tags: readonly string[], flight: Flight<unknown>, forceFill: boolean): Promise<unknown> {
    // One deadline for the whole load's Redis work: L2 read, versions and epochs, fill.
    const budget = this.budgets.start();
    if (st.policy.useL2 && !forceFill) {
      const r = await this.l2Reads.read(st, key, flight, budget);
      if (r !== null && !r.stale) return r.value;
      if (r !== null && r.stale && st.policy.graceMillis > 0 && st.policy.softTimeoutMillis === 0) {
        // Stale in L2 within grace: serve it and refresh in the background, as the key's next
        // flight once this one settles, so concurrent callers join one refresh and an
        // invalidation during the refresh detaches it (it then fills nothing).
        st.staleServed++;
        const refresh = (): void => {
          const next = this.coherence.flights.run(flightKey(st.policy.name, key), tags, (f) => this.fill.loadAndFill(st, key, loader, tags, f, forceFill, this.budgets.start()));
          next.promise.catch((error) => this.hub.emitter.emit('error', { policy: st.policy.name, key, error }));
        };
        void flight.promise.then(refresh, refresh);
        return r.value;
      }
    }
    this.hub.miss(st, key);
    return this.fill.loadAndFill(st, key, loader, tags, flight, forceFill, budget);
  }

  /** Values of several keys (L1, then one MGET per Redis server); with `loader`, missing keys are loaded. */
  async getMany(st: PolicyState, keys: readonly string[], loader?: (key: string) => Promise<unknown>): Promise<unknown[]> {
    const out: unknown[] = keys.map((k) => this.peek(st, k));
    let missing = keys.map((_, i) => i).filter((i) => out[i] === undefined);
    if (st.l1 !== null) st.l1c.misses += missing.length;
    const usable = missing.filter((i) => this.pending.l2Usable(st, keys[i]!));
    if (st.policy.useL2 && usable.length > 0) {
      await this.l2Reads.readMany(st, keys, usable, out, this.budgets.start());
      missing = missing.filter((i) => out[i] === undefined);
    }
    if (loader !== undefined) {
      await Promise.all(missing.map(async (i) => (out[i] = await this.getOrLoad(st, keys[i]!, () => loader(keys[i]!), [], false))));
    }
    return out;
  }

  /** Loads `keys` with at most `concurrency` loader calls at once, filling the tiers; never throws. */
  async warmUp(st: PolicyState, keys: readonly string[], loader: (key: string) => Promise<unknown>, options: { concurrency?: number }): Promise<WarmUpResult> {
    requireKnownKeys('warmUp', requireObject('warmUp', options), ['concurrency']);
    const concurrency = requireInteger('warmUp.concurrency', options.concurrency ?? 8, 1);
    let loaded = 0;
    let alreadyCached = 0;
    const failed: { key: string; error: unknown }[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length) {
        const key = keys[next++]!;
        try {
          if ((await this.get(st, key)) !== undefined) {
            alreadyCached++;
            continue;
          }
          await this.getOrLoad(st, key, () => loader(key), [], true);
          loaded++;
        } catch (error) {
          failed.push({ key, error });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, worker));
    return Object.freeze({ loaded, alreadyCached, failed: Object.freeze(failed) });
  }
}
