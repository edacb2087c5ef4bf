/**
 * The write path: write-through (source of truth, then L2, then L1, then the bus) or
 * invalidate-on-write, and invalidation by key, tag and namespace in every tier and on every
 * instance. What Redis or the bus did not take is queued in {@link PendingInvalidations}.
 */
import type { Clock } from '../kernel/clock';
import { namespaceEpoch, type CacheCoherence, type WriteInFlight } from './cache-coherence';
import { encodeEntry } from './cache-entry';
import { CacheSerializationError, CacheValueTooLargeError } from './cache-errors';
import type { CacheBusLink } from './cache-bus-link';
import type { CacheEventHub } from './cache-events';
import type { PendingInvalidations } from './cache-pending-invalidations';
import type { PolicyRegistry, PolicyState } from './cache-policy-state';
import type { CacheValueCodec } from './cache-value-codec';
import type { L2Tier } from './l2-tier';
import type { SetOptions } from './tiered-cache-options';

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
  ) {}

  /** Writes a value: the source of truth first, then write-through or invalidation, then the bus. */
  async set<T>(st: PolicyState, key: string, value: T, options: SetOptions<T>): Promise<void> {
    const name = st.policy.name;
    // One rule for `undefined`: it means "no value" and is never stored (a loader's `undefined`
    // is not cached either), so refusing it here keeps `peek`/`get` from caching a miss.
    if (value === undefined) throw new CacheSerializationError('Cannot cache `undefined`: it means "no value" (store null, or call invalidate())', { path: '$' });
    let payload: string | undefined;
    try {
      payload = this.codec.serialize(value);
    } catch (error) {
      // Without a source of truth to write, refusing is the answer; with one, save and invalidate.
      if (options.save === undefined || !(error instanceof CacheValueTooLargeError)) throw error;
      this.hub.emitter.emit('error', { policy: name, key, error });
    }
    if (payload === undefined || !st.policy.writeThrough) {
      if (options.save !== undefined) await options.save(value);
      await this.invalidateKeys(st, [key]);
      return;
    }
    const tags = options.tags ?? [];
    // An invalidation of this key (local, from the bus, by tag or namespace) from the start of the
    // save until the L1 fill may stand for a newer write elsewhere: then this value goes neither to
    // L1 nor stays in L2 (the key is invalidated instead).
    const w = this.coherence.beginWrite(st, key, tags);
    try {
      if (options.save !== undefined) await options.save(value);
      // Loads that started before the save may hold the old value: they must not fill.
      this.coherence.noteInvalidation(st, key, w);
      await this.writeThrough(st, key, payload, tags, w);
    } finally {
      this.coherence.endWrite(w);
    }
    await this.bus.publish({ type: 'keys', policy: name, keys: [key] }, () => this.pending.addKeys(st, [key]));
    this.hub.emitter.emit('write', { policy: name, key });
  }

  private async writeThrough(st: PolicyState, key: string, payload: string, tags: readonly string[], w: WriteInFlight): Promise<void> {
    const name = st.policy.name;
    const stamps = await this.coherence.stampsForFill(st, tags);
    const now = this.clock.now();
    const freshUntil = now + st.policy.ttlMillis;
    const staleUntil = freshUntil + st.policy.graceMillis;
    let l2Ok = !st.policy.useL2;
    if (st.policy.useL2 && stamps.ns !== undefined && this.pending.l2Usable(st, key)) {
      try {
        await this.l2!.write(`${name}:${key}`, encodeEntry(payload, freshUntil, staleUntil, stamps.ns, stamps.tags), staleUntil - now);
        st.l2c.writes++;
        l2Ok = true;
      } catch (error) {
        this.hub.l2Failed(st, key, error);
      }
    }
    if (!l2Ok || w.overtaken) await this.invalidateL2(st, [key]);
    if (st.l1 !== null && !w.overtaken) {
      st.l1.set(key, this.codec.l1Entry(payload, freshUntil, staleUntil, stamps.ns ?? 0, stamps.tags));
      st.l1c.writes++;
    }
  }

  /** Invalidates keys in L1, L2 (version bump, so racing fills fail) and on the other instances. */
  async invalidateKeys(st: PolicyState, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    for (const k of keys) {
      this.coherence.noteInvalidation(st, k);
      st.l1?.delete(k);
    }
    st.l1c.invalidations += keys.length;
    if (st.policy.useL2) await this.invalidateL2(st, keys);
    await this.bus.publish({ type: 'keys', policy: st.policy.name, keys }, () => this.pending.addKeys(st, keys));
    this.hub.emitter.emit('invalidate', { policy: st.policy.name, keys, source: 'local' });
  }

  private async invalidateL2(st: PolicyState, keys: readonly string[]): Promise<void> {
    try {
      if (!this.pending.l2Usable(st, undefined)) throw new Error('policy bypasses L2 until its namespace is bumped');
      await this.l2!.invalidate(keys.map((k) => `${st.policy.name}:${k}`));
      st.l2c.invalidations += keys.length;
    } catch (error) {
      this.hub.l2Failed(st, undefined, error);
      this.pending.addKeys(st, keys);
    }
  }

  /** Invalidates every entry carrying one of `tags`, in every policy and on every instance. */
  async invalidateTags(tags: readonly string[]): Promise<void> {
    if (tags.length === 0) return;
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
          epoch = await this.l2!.bumpEpoch(tag);
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
    await this.bus.publish({ type: 'tags', tags: bumped }, () => this.pending.addTags(tags));
    this.hub.emitter.emit('invalidate', { policy: '*', tags, source: 'local' });
  }

  /** Invalidates every entry of a policy (its namespace), on every instance, without scanning Redis. */
  async invalidateNamespace(st: PolicyState): Promise<void> {
    const name = st.policy.name;
    let epoch: number | null = null;
    if (st.policy.useL2) {
      try {
        epoch = await this.l2!.bumpEpoch(namespaceEpoch(name));
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
    await this.bus.publish({ type: 'namespace', policy: name, epoch }, () => this.pending.addNamespace(name));
    this.hub.emitter.emit('invalidate', { policy: name, namespace: true, source: 'local' });
  }
}
