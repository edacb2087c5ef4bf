/**
 * Reading entries from L2: decoded, checked against the current namespace and tag epochs (a
 * damaged, foreign or outdated entry is a miss, never a failed read), and backfilled to L1 unless
 * an invalidation arrived while Redis answered.
 */
import type { Clock } from '../kernel/clock';
import type { CallBudget } from './cache-call-budget';
import type { CacheCoherence } from './cache-coherence';
import { decodeEntry, type DecodedHeader } from './cache-entry';
import type { CacheEventHub } from './cache-events';
import type { PendingInvalidations } from './cache-pending-invalidations';
import type { PolicyState } from './cache-policy-state';
import type { CacheValueCodec } from './cache-value-codec';
import type { L2Tier } from './l2-tier';
import type { CacheEntry } from './memory-tier';
import type { Flight } from './single-flight';

/**
 * What an L2 read found: the value, and whether it was stale (within grace).
 * @internal
 */
export interface L2Read {
  readonly value: unknown;
  readonly stale: boolean;
}

/** @internal */
export class CacheL2Reads {
  constructor(
    private readonly l2: L2Tier | undefined,
    private readonly coherence: CacheCoherence,
    private readonly pending: PendingInvalidations,
    private readonly codec: CacheValueCodec,
    private readonly hub: CacheEventHub,
    private readonly clock: Clock,
  ) {}

  /** The L2 part of a read. Returns null on a miss; backfills L1 unless an invalidation arrived meanwhile. */
  async read(st: PolicyState, key: string, flight: Flight<unknown>, budget: CallBudget): Promise<L2Read | null> {
    if (!this.pending.l2Usable(st, key)) return null;
    let text: string | null;
    try {
      text = await budget.wait(() => this.l2!.get(`${st.policy.name}:${key}`), this.l2!.commandTimeoutMillis);
    } catch (error) {
      this.hub.l2Failed(st, key, error);
      return null;
    }
    return this.found(st, key, flight, text, budget);
  }

  /**
   * The fresh value `get` answers with, or `undefined` (a miss, reported as one). The same as
   * {@link CacheL2Reads.read} without the extra promise between Redis's answer and the caller.
   */
  async readValue(st: PolicyState, key: string, flight: Flight<unknown>, budget: CallBudget): Promise<unknown> {
    let r: L2Read | null | Promise<L2Read | null> = null;
    if (this.pending.l2Usable(st, key)) {
      try {
        r = this.found(st, key, flight, await budget.wait(() => this.l2!.get(`${st.policy.name}:${key}`), this.l2!.commandTimeoutMillis), budget);
      } catch (error) {
        this.hub.l2Failed(st, key, error);
      }
      if (r instanceof Promise) r = await r;
    }
    if (r !== null && !r.stale) return r.value;
    this.hub.miss(st, key);
    return undefined;
  }

  /** What an L2 answer means: synchronous unless epochs must be read first. */
  private found(st: PolicyState, key: string, flight: Flight<unknown>, text: string | null, budget: CallBudget): L2Read | null | Promise<L2Read | null> {
    // Redis answers: a good moment to replay what it missed.
    if (this.pending.count > 0) void this.pending.flush();
    const entry = text === null ? null : this.decode(st, text, budget);
    if (entry instanceof Promise) return entry.then((e) => this.classify(st, key, flight, e));
    return this.classify(st, key, flight, entry);
  }

  private classify(st: PolicyState, key: string, flight: Flight<unknown>, found: CacheEntry | null): L2Read | null {
    const now = this.clock.now();
    if (found === null || now >= found.staleUntil) {
      st.l2c.misses++;
      return null;
    }
    if (now >= found.freshUntil) {
      st.l2c.misses++;
      // Read before an invalidation that has arrived since: not servable, even as stale.
      if (flight.stale) return null;
      if (st.l1 !== null) st.l1.set(key, found);
      return { value: found.value, stale: true };
    }
    st.l2c.hits++;
    if (this.hub.listeningHits) this.hub.emitter.emit('hit', { policy: st.policy.name, key, tier: 'l2' });
    if (st.l1 !== null && !flight.stale) st.l1.set(key, found);
    return { value: found.value, stale: false };
  }

  /**
   * The L2 part of `getMany`: one MGET (per server) for the keys at `indexes`, writing fresh values
   * into `out`. A failure of Redis leaves them missing.
   */
  async readMany(st: PolicyState, keys: readonly string[], indexes: readonly number[], out: unknown[], budget: CallBudget): Promise<void> {
    const seq = st.invalidationSeq;
    try {
      const texts = await budget.wait(() => this.l2!.mget(indexes.map((i) => `${st.policy.name}:${keys[i]}`)), this.l2!.commandTimeoutMillis);
      const now = this.clock.now();
      for (let j = 0; j < indexes.length; j++) {
        const text = texts[j];
        const i = indexes[j]!;
        let e = text == null ? null : this.decode(st, text, budget);
        if (e instanceof Promise) e = await e;
        if (e === null || now >= e.freshUntil) {
          st.l2c.misses++;
          continue;
        }
        st.l2c.hits++;
        out[i] = e.value;
        if (st.l1 !== null && seq === st.invalidationSeq) st.l1.set(keys[i]!, e);
      }
    } catch (error) {
      this.hub.l2Failed(st, undefined, error);
    }
  }

  /**
   * Decodes an L2 entry and checks its namespace and tag stamps against the current epochs:
   * synchronously when this instance knows them (the common case), else after reading them.
   */
  private decode(st: PolicyState, text: string, budget: CallBudget): CacheEntry | null | Promise<CacheEntry | null> {
    const h = decodeEntry(text);
    if (h === null) return null;
    const unknown = this.coherence.epochsToLearn(st, h.tags);
    if (unknown === null) return this.checked(st, h);
    return budget.wait(() => this.l2!.readEpochs(unknown), this.l2!.commandTimeoutMillis).then(
      (epochs) => {
        this.coherence.learnEpochs(st, unknown, epochs);
        return this.checked(st, h);
      },
      (error: unknown) => {
        this.hub.l2Failed(st, undefined, error);
        return null;
      },
    );
  }

  private checked(st: PolicyState, h: DecodedHeader): CacheEntry | null {
    if (!this.coherence.stampsCurrent(st, h.nsEpoch, h.tags)) return null;
    let value: unknown;
    try {
      // Frozen only when L1 may keep it: L1's values are shared by every caller.
      value = this.codec.deserialize(h.payload, st.l1 !== null);
    } catch (error) {
      // A damaged or foreign entry is a miss, never a failed read.
      this.hub.l2Failed(st, undefined, error);
      return null;
    }
    return { value, size: h.payload.length, freshUntil: h.freshUntil, staleUntil: h.staleUntil, nsEpoch: h.nsEpoch, tags: h.tags };
  }
}
