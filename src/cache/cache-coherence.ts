/**
 * Coherence: the state that decides whether a value may still be served or stored. The
 * invariants it keeps, in one place:
 *
 * - An entry is served only while the namespace and tag epochs it was stamped with are current.
 * - A load, or a `set`, that an invalidation of its key, tag or namespace overtook fills nothing
 *   (single-flight entries are marked stale and detached; writes in flight are marked overtaken).
 * - Fills carry the epochs read *before* the loader ran, so a later invalidation makes them fail.
 * - Local epochs (when Redis cannot be asked) are negative and never reused, so they never equal a
 *   Redis epoch or an old stamp.
 */
import type { CallBudget } from './cache-call-budget';
import type { CacheEventHub } from './cache-events';
import type { PolicyRegistry, PolicyState } from './cache-policy-state';
import type { L2Tier } from './l2-tier';
import type { TagStamp } from './memory-tier';
import { SingleFlight } from './single-flight';

/**
 * The name of a policy's namespace epoch counter.
 * @internal
 */
export const namespaceEpoch = (policy: string): string => `ns:${policy}`;

/**
 * The single-flight (and write-in-flight) key of a policy's key.
 * @internal
 */
export const flightKey = (policy: string, key: string): string => `${policy}\u0000${key}`;


/**
 * A `set` between its source-of-truth write and its L1 fill; an invalidation of the key marks it overtaken.
 * @internal
 */
export interface WriteInFlight {
  readonly key: string;
  readonly tags: readonly string[];
  overtaken: boolean;
}

/**
 * Epochs to stamp an entry with: the namespace's (`undefined` when Redis could not be asked, then
 * L2 must not be written) and the tags'.
 * @internal
 */
export interface FillStamps {
  readonly ns: number | undefined;
  readonly tags: readonly TagStamp[] | null;
}

/** @internal */
export class CacheCoherence {
  /** One load per key per process; invalidations mark and detach the ones they overtake. */
  readonly flights = new SingleFlight<unknown>();
  /** One plain L2 read (`get`) per key per process, apart from loads: a load never joins a read (it may find nothing). */
  readonly reads = new SingleFlight<unknown>();
  /** `set` calls between their source-of-truth write and their L1 fill. */
  private readonly writing = new Set<WriteInFlight>();
  /** Tag epochs as last seen (from Redis or the bus). */
  private readonly tagEpochs = new Map<string, number>();
  /** Source of local-only epochs: negative and never reused. */
  private localEpoch = 0;

  constructor(
    private readonly registry: PolicyRegistry,
    private readonly l2: L2Tier | undefined,
    private readonly hub: CacheEventHub,
  ) {}

  // ---- epochs -----------------------------------------------------------------------------------

  /** Whether every tag stamp is the tag's current epoch. */
  tagsCurrent(tags: readonly TagStamp[]): boolean {
    for (const [t, e] of tags) if (this.tagEpochs.get(t) !== e) return false;
    return true;
  }

  /** Whether an L2 entry's stamps are current (once its unknown epochs were learnt). */
  stampsCurrent(st: PolicyState, nsEpoch: number, tags: readonly TagStamp[] | null): boolean {
    return nsEpoch === st.nsEpoch && (tags === null || this.tagsCurrent(tags));
  }

  /**
   * The epochs an L2 entry's check needs that this instance does not know yet (read them, then
   * {@link CacheCoherence.learnEpochs}); `null` when it knows them all (the common case: no allocation).
   */
  epochsToLearn(st: PolicyState, tags: readonly TagStamp[] | null): string[] | null {
    let unknown: string[] | null = null;
    if (st.nsEpoch === undefined) unknown = [namespaceEpoch(st.policy.name)];
    if (tags !== null) for (const [t] of tags) if (!this.tagEpochs.has(t)) (unknown ??= []).push(t);
    return unknown;
  }

  /** Records epochs read from Redis for `names` (from {@link CacheCoherence.epochsToLearn}). */
  learnEpochs(st: PolicyState, names: readonly string[], epochs: readonly number[]): void {
    const ns = namespaceEpoch(st.policy.name);
    names.forEach((name, i) => {
      if (name === ns) st.nsEpoch = epochs[i]!;
      else this.tagEpochs.set(name, epochs[i]!);
    });
  }

  /** Namespace and tag epochs to stamp an entry with; from Redis when it answers, else local knowledge. */
  async stampsForFill(st: PolicyState, tags: readonly string[], budget: CallBudget): Promise<FillStamps> {
    if (st.policy.useL2) {
      try {
        const epochs = await budget.wait(() => this.l2!.readEpochs([namespaceEpoch(st.policy.name), ...tags]), this.l2!.commandTimeoutMillis);
        const ns = epochs[0]!;
        st.nsEpoch = ns;
        const stamps = tags.map((t, i): TagStamp => [t, epochs[i + 1]!]);
        // Learn only tags not known yet: a newer epoch from the bus must not be overwritten by this read.
        for (const [t, e] of stamps) if (!this.tagEpochs.has(t)) this.tagEpochs.set(t, e);
        return { ns, tags: stamps.length === 0 ? null : stamps };
      } catch (error) {
        this.hub.l2Failed(st, undefined, error);
      }
    }
    if (tags.length === 0) return { ns: st.policy.useL2 ? undefined : 0, tags: null };
    const stamps = tags.map((t): TagStamp => {
      let e = this.tagEpochs.get(t);
      if (e === undefined) this.tagEpochs.set(t, (e = --this.localEpoch));
      return [t, e];
    });
    return { ns: st.policy.useL2 ? undefined : 0, tags: stamps };
  }

  /** Moves a tag's epoch to a local value no entry carries: entries stamped with the old one stop being served. */
  moveTagLocally(tag: string): void {
    this.tagEpochs.set(tag, --this.localEpoch);
  }

  /** Records the epoch Redis gave a bumped tag, or, without one, moves it locally. */
  setTagEpoch(tag: string, epoch: number | undefined): void {
    this.tagEpochs.set(tag, epoch ?? --this.localEpoch);
  }

  /** A tag epoch from another instance; `null`: the sender could not reach Redis, so move ours to a value no entry carries. */
  applyRemoteTagEpoch(tag: string, epoch: number | null): void {
    if (epoch !== null) this.tagEpochs.set(tag, epoch);
    else if (this.tagEpochs.has(tag)) this.tagEpochs.set(tag, --this.localEpoch);
  }

  /** The bus stayed silent: every L1 is emptied and stores nothing until {@link CacheCoherence.resumeL1}. */
  suspendL1(): void {
    for (const st of this.registry.values()) {
      st.invalidationSeq++;
      st.l1?.suspend();
    }
  }

  /** L1 stores entries again (the bus was confirmed live). */
  resumeL1(): void {
    for (const st of this.registry.values()) st.l1?.resume();
  }

  /** Pub/sub may have dropped messages: forget every epoch and every L1 entry they could have invalidated. */
  forgetAll(): void {
    this.tagEpochs.clear();
    for (const st of this.registry.values()) {
      st.nsEpoch = undefined;
      this.clearPolicyLocally(st);
    }
  }

  // ---- loads and writes in flight ----------------------------------------------------------------

  /** Registers a `set` whose value is being saved; end it with {@link CacheCoherence.endWrite}. */
  beginWrite(st: PolicyState, key: string, tags: readonly string[]): WriteInFlight {
    const w: WriteInFlight = { key: flightKey(st.policy.name, key), tags, overtaken: false };
    this.writing.add(w);
    return w;
  }

  endWrite(w: WriteInFlight): void {
    this.writing.delete(w);
  }

  /** An invalidation of `key`: loads and writes of it in flight (other than `self`) must not fill. */
  noteInvalidation(st: PolicyState, key: string, self?: WriteInFlight): void {
    st.invalidationSeq++;
    const fk = flightKey(st.policy.name, key);
    this.flights.markKey(fk);
    this.reads.markKey(fk);
    if (this.writing.size > 0) for (const w of this.writing) if (w.key === fk && w !== self) w.overtaken = true;
  }

  /** Marks loads and writes in progress whose tags include one of `tags`. */
  noteTagInvalidation(tags: ReadonlySet<string>): void {
    const match = (f: { readonly tags: readonly string[] }): boolean => f.tags.some((t) => tags.has(t));
    this.flights.markWhere(match);
    for (const w of this.writing) if (match(w)) w.overtaken = true;
  }

  /** A tag invalidation may touch any policy: batch backfills of every policy skip. */
  noteTagsMovedEverywhere(): void {
    for (const st of this.registry.values()) st.invalidationSeq++;
  }

  /** Drops a policy's L1 and overtakes its loads and writes in flight (namespace invalidation). */
  clearPolicyLocally(st: PolicyState): void {
    st.invalidationSeq++;
    st.l1?.clear();
    const prefix = `${st.policy.name}\u0000`;
    this.flights.markWhere((f) => f.key.startsWith(prefix));
    this.reads.markWhere((f) => f.key.startsWith(prefix));
    for (const w of this.writing) if (w.key.startsWith(prefix)) w.overtaken = true;
  }
}
