/**
 * The write path: write-through (source of truth, then L2, then L1, then the bus) or
 * invalidate-on-write, and invalidation by key, tag and namespace in every tier and on every
 * instance. What Redis or the bus did not take is queued in {@link PendingInvalidations}.
 *
 * Concurrent write-through of one key by two instances is ordered in L2, the one place every
 * instance shares (before, the last L2 write won, whatever the source said):
 * - with a `version` from the source, the L2 write lands only if no greater version was written;
 * - with a `save`, the key's L2 version is read before the save and the write lands only if
 *   nothing wrote or invalidated the key since: two writes whose saves overlap cannot both land,
 *   and the one that does was saved last (its version read followed the other's write);
 * - with neither, the cache cannot know which write the source kept: the key is invalidated
 *   instead (the next read loads it), on every tier and instance.
 * A write that loses is not filled into L1 either.
 */
import type { Clock } from '../kernel/clock';
import { describeValue, requireKnownKeys, requireObject } from '../kernel/validate';
import { ConfigError } from '../kernel/errors';
import type { CallBudget, CallBudgets } from './cache-call-budget';
import { namespaceEpoch, type CacheCoherence, type WriteInFlight } from './cache-coherence';
import { encodeEntry } from './cache-entry';
import { CacheSerializationError, CacheValueTooLargeError } from './cache-errors';
import type { CacheBusLink } from './cache-bus-link';
import type { CacheEventHub } from './cache-events';
import type { PendingInvalidations, PendingWrite } from './cache-pending-invalidations';
import type { PolicyRegistry, PolicyState } from './cache-policy-state';
import type { CacheValueCodec } from './cache-value-codec';
import type { L2Tier, L2WriteCondition, VersionToken } from './l2-tier';
import type { SetOptions } from './tiered-cache-options';

const SET_OPTION_KEYS: readonly (keyof SetOptions<unknown>)[] = ['save', 'tags', 'version'];

/** What a write-through's L2 step did. */
type L2Outcome = 'written' | 'superseded' | 'conflict' | 'failed' | 'skipped';

/** @internal */
export class CacheWritePath {
  constructor(
    private readonly registry: PolicyRegistry,
    private readonly l2: L2Tier | undefined,
    private readonly coherence: CacheCoherence,
    private readonly pending: PendingInvalidations,
    private readonly codec: CacheValueCodec,
    private readonly bus: CacheBusLink,
    private readonly hub: CacheEventHub,
    private readonly clock: Clock,
    private readonly budgets: CallBudgets,
  ) {}

  /** Writes a value: the source of truth first, then write-through or invalidation, then the bus. */
  async set<T>(st: PolicyState, key: string, value: T, options: SetOptions<T>): Promise<void> {
    const name = st.policy.name;
    // One rule for `undefined`: it means "no value" and is never stored (a loader's `undefined`
    // is not cached either), so refusing it here keeps `peek`/`get` from caching a miss.
    if (value === undefined) throw new CacheSerializationError('Cannot cache `undefined`: it means "no value" (store null, or call invalidate())', { path: '$' });
    requireKnownKeys('set', requireObject('set', options), SET_OPTION_KEYS);
    const version = sourceVersion(options.version);
    let payload: string | undefined;
    try {
      payload = this.codec.serialize(value);
    } catch (error) {
      // Without a source of truth to write, refusing is the answer; with one, save and invalidate.
      if (options.save === undefined || !(error instanceof CacheValueTooLargeError)) throw error;
      this.hub.emitter.emit('error', { policy: name, key, error });
    }
    const budget = this.budgets.start();
    // Without a version or a save, an L2 write cannot be ordered against other instances' writes.
    const unordered = st.policy.useL2 && version === undefined && options.save === undefined;
    if (payload === undefined || !st.policy.writeThrough || unordered) {
      if (options.save !== undefined) await this.save(options.save, value, budget);
      await this.invalidateKeys(st, [key], budget);
      return;
    }
    const tags = options.tags ?? [];
    // An invalidation of this key (local, from the bus, by tag or namespace) from the start of the
    // save until the L1 fill may stand for a newer write elsewhere: then this value goes neither to
    // L1 nor stays in L2 (the key is invalidated instead).
    const w = this.coherence.beginWrite(st, key, tags);
    let outcome: L2Outcome;
    try {
      const before = st.policy.useL2 && version === undefined ? await this.readVersion(st, key, budget) : null;
      if (options.save !== undefined) await this.save(options.save, value, budget);
      // Loads that started before the save may hold the old value: they must not fill.
      this.coherence.noteInvalidation(st, key, w);
      const condition: L2WriteCondition | null = version !== undefined ? { version } : before !== null ? { ifVersion: before } : null;
      outcome = await this.writeThrough(st, key, payload, tags, w, condition, budget);
    } finally {
      this.coherence.endWrite(w);
    }
    const write: PendingWrite | null = version !== undefined && tags.length === 0 ? { payload, version } : null;
    await this.bus.publish({ type: 'keys', policy: name, keys: [key] }, budget, () =>
      outcome === 'failed' && write !== null ? this.pending.addWrite(st, key, write) : this.pending.addKeys(st, [key]),
    );
    this.hub.emitter.emit('write', { policy: name, key });
  }

  /** The caller's save: its time is its own, not the call's Redis deadline. */
  private async save<T>(save: (value: T) => Promise<unknown>, value: T, budget: CallBudget): Promise<void> {
    budget.pause();
    try {
      await save(value);
    } finally {
      budget.resume();
    }
  }

  private async readVersion(st: PolicyState, key: string, budget: CallBudget): Promise<VersionToken | null> {
    if (!this.pending.l2Usable(st, key)) return null;
    try {
      return await budget.wait(() => this.l2!.readVersion(`${st.policy.name}:${key}`), this.l2!.commandTimeoutMillis);
    } catch (error) {
      this.hub.l2Failed(st, key, error);
      return null;
    }
  }

  private async writeThrough(
    st: PolicyState,
    key: string,
    payload: string,
    tags: readonly string[],
    w: WriteInFlight,
    condition: L2WriteCondition | null,
    budget: CallBudget,
  ): Promise<L2Outcome> {
    const stamps = await this.coherence.stampsForFill(st, tags, budget);
    const now = this.clock.now();
    const freshUntil = now + st.policy.ttlMillis;
    const staleUntil = freshUntil + st.policy.graceMillis;
    let outcome: L2Outcome = 'skipped';
    if (st.policy.useL2) {
      outcome = 'failed';
      // A save-ordered write whose version could not be read cannot be ordered: invalidate instead.
      if (stamps.ns !== undefined && condition !== null && this.pending.l2Usable(st, key)) {
        const entry = encodeEntry(payload, freshUntil, staleUntil, stamps.ns, stamps.tags);
        try {
          const written = await budget.wait(() => this.l2!.write(`${st.policy.name}:${key}`, entry, staleUntil - now, condition));
          outcome = written ? 'written' : 'version' in condition ? 'superseded' : 'conflict';
          if (written) st.l2c.writes++;
        } catch (error) {
          this.hub.l2Failed(st, key, error);
        }
      }
      // A versioned write that did not reach L2 is queued as that write (it stays ordered), the rest as an invalidation.
      const queueWrite = outcome === 'failed' && condition !== null && 'version' in condition && tags.length === 0;
      if (queueWrite) this.pending.addWrite(st, key, { payload, version: condition.version });
      else if (outcome === 'failed' || outcome === 'conflict' || (w.overtaken && outcome === 'written')) await this.invalidateL2(st, [key], budget);
    }
    // L1 keeps this value unless it lost to another write (superseded, conflict) or an invalidation overtook it.
    if (st.l1 !== null) {
      if (outcome === 'superseded' || outcome === 'conflict' || w.overtaken) st.l1.delete(key);
      else {
        st.l1.set(key, this.codec.l1Entry(payload, freshUntil, staleUntil, stamps.ns ?? 0, stamps.tags));
        st.l1c.writes++;
      }
    }
    return outcome;
  }

  /** Replays a versioned write that did not reach L2 (no L1 change: this instance's L1 took it when it was made). */
  async replayWrite(st: PolicyState, key: string, write: PendingWrite): Promise<void> {
    const budget = this.budgets.start();
    const stamps = await this.coherence.stampsForFill(st, [], budget);
    const now = this.clock.now();
    const freshUntil = now + st.policy.ttlMillis;
    const staleUntil = freshUntil + st.policy.graceMillis;
    let outcome: L2Outcome = 'failed';
    if (stamps.ns !== undefined) {
      try {
        const entry = encodeEntry(write.payload, freshUntil, staleUntil, stamps.ns, null);
        outcome = (await budget.wait(() => this.l2!.write(`${st.policy.name}:${key}`, entry, staleUntil - now, { version: write.version }))) ? 'written' : 'superseded';
      } catch (error) {
        this.hub.l2Failed(st, key, error);
      }
    }
    if (outcome === 'failed') {
      this.pending.addWrite(st, key, write);
      return;
    }
    if (outcome === 'superseded') st.l1?.delete(key);
    else st.l2c.writes++;
    // Other instances may still hold the value this write replaced: tell them now.
    await this.bus.publish({ type: 'keys', policy: st.policy.name, keys: [key] }, budget, () => this.pending.addKeys(st, [key]));
  }

  /** Invalidates keys in L1, L2 (version bump, so racing fills fail) and on the other instances. */
  async invalidateKeys(st: PolicyState, keys: readonly string[], budget: CallBudget = this.budgets.start()): Promise<void> {
    if (keys.length === 0) return;
    for (const k of keys) {
      this.coherence.noteInvalidation(st, k);
      st.l1?.delete(k);
    }
    st.l1c.invalidations += keys.length;
    if (st.policy.useL2) await this.invalidateL2(st, keys, budget);
    await this.bus.publish({ type: 'keys', policy: st.policy.name, keys }, budget, () => this.pending.addKeys(st, keys));
    this.hub.emitter.emit('invalidate', { policy: st.policy.name, keys, source: 'local' });
  }

  private async invalidateL2(st: PolicyState, keys: readonly string[], budget: CallBudget): Promise<void> {
    try {
      if (!this.pending.l2Usable(st, undefined)) throw new Error('policy bypasses L2 until its namespace is bumped');
      await budget.wait(() => this.l2!.invalidate(keys.map((k) => `${st.policy.name}:${k}`)));
      st.l2c.invalidations += keys.length;
    } catch (error) {
      this.hub.l2Failed(st, undefined, error);
      this.pending.addKeys(st, keys);
    }
  }

  /** Invalidates every entry carrying one of `tags`, in every policy and on every instance. */
  async invalidateTags(tags: readonly string[]): Promise<void> {
    if (tags.length === 0) return;
    const budget = this.budgets.start();
    const bumped: [string, number | null][] = [];
    // Locally first and synchronously: this instance stops serving the tagged entries at once,
    // and loads already running will not fill.
    for (const tag of tags) this.coherence.moveTagLocally(tag);
    const set = new Set(tags);
    this.coherence.noteTagInvalidation(set);
    for (const tag of tags) {
      let epoch: number | undefined;
      if (this.registry.anyUsesL2) {
        try {
          epoch = await budget.wait(() => this.l2!.bumpEpoch(tag));
        } catch (error) {
          this.hub.l2Failed(undefined, undefined, error);
          this.pending.addTags([tag]);
        }
      }
      // Without Redis, move the local epoch anyway (to a never-used negative value) so L1 entries
      // with the old stamp stop being served; receivers do the same for a `null` epoch.
      this.coherence.setTagEpoch(tag, epoch);
      bumped.push([tag, epoch ?? null]);
    }
    this.coherence.noteTagInvalidation(set);
    this.coherence.noteTagsMovedEverywhere();
    await this.bus.publish({ type: 'tags', tags: bumped }, budget, () => this.pending.addTags(tags));
    this.hub.emitter.emit('invalidate', { policy: '*', tags, source: 'local' });
  }

  /** Invalidates every entry of a policy (its namespace), on every instance, without scanning Redis. */
  async invalidateNamespace(st: PolicyState): Promise<void> {
    const name = st.policy.name;
    const budget = this.budgets.start();
    let epoch: number | null = null;
    if (st.policy.useL2) {
      try {
        epoch = await budget.wait(() => this.l2!.bumpEpoch(namespaceEpoch(name)));
        st.nsEpoch = epoch;
        st.l2Bypass = false;
      } catch (error) {
        this.hub.l2Failed(st, undefined, error);
        this.pending.addNamespace(name);
        st.nsEpoch = undefined;
        st.l2Bypass = true;
      }
    }
    this.coherence.clearPolicyLocally(st);
    await this.bus.publish({ type: 'namespace', policy: name, epoch }, budget, () => this.pending.addNamespace(name));
    this.hub.emitter.emit('invalidate', { policy: name, namespace: true, source: 'local' });
  }
}

/** `SetOptions.version` as decimal text: a non-negative safe integer or bigint. */
function sourceVersion(version: number | bigint | undefined): string | undefined {
  if (version === undefined) return undefined;
  if ((typeof version === 'number' && Number.isSafeInteger(version) && version >= 0) || (typeof version === 'bigint' && version >= 0n)) {
    return version.toString();
  }
  throw new ConfigError('version', `must be an integer >= 0 (a number or a bigint), got ${describeValue(version)}`);
}
