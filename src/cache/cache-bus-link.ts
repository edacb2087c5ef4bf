/**
 * The cache's side of the invalidation bus: publishing its invalidations, applying the other
 * instances' ones, and forgetting what a dropped subscription could have missed.
 */
import type { Clock } from '../kernel/clock';
import type { CacheCoherence } from './cache-coherence';
import type { CacheEventHub } from './cache-events';
import type { PolicyRegistry } from './cache-policy-state';
import type { BusMessage, InvalidationBus } from './invalidation-bus';

/** @internal */
export class CacheBusLink {
  /** Messages received from other instances, published, and reconnects of the subscriber. */
  received = 0;
  published = 0;
  reconnects = 0;

  constructor(
    private readonly bus: InvalidationBus | undefined,
    private readonly registry: PolicyRegistry,
    private readonly coherence: CacheCoherence,
    private readonly hub: CacheEventHub,
    private readonly clock: Clock,
  ) {}

  /**
   * Starts applying the bus's messages; after a reconnect, `onReconnect` runs once local state is
   * forgotten (to replay pending invalidations). Returns the functions that stop listening.
   */
  listen(onReconnect: () => void): (() => void)[] {
    if (this.bus === undefined) return [];
    return [
      this.bus.subscribe((m) => this.apply(m)),
      this.bus.onReconnect(() => {
        this.reconnects++;
        // Pub/sub may have dropped messages while disconnected: forget everything local that they could have invalidated.
        this.coherence.forgetAll();
        onReconnect();
      }),
    ];
  }

  /** Publishes `message`; when the bus fails, reports it and runs `onFailure` (to queue the invalidation). */
  async publish(message: BusMessage, onFailure: () => void): Promise<void> {
    if (this.bus === undefined) return;
    try {
      await this.bus.publish(message);
      this.published++;
    } catch (error) {
      this.hub.emitter.emit('error', { error });
      onFailure();
    }
  }

  private apply(m: BusMessage): void {
    const receivedAt = this.clock.monotonicNow();
    this.received++;
    const handlers: { [K in BusMessage['type']]: (m: Extract<BusMessage, { type: K }>) => void } = {
      keys: (msg) => {
        const st = this.registry.find(msg.policy);
        if (st === undefined) return;
        for (const k of msg.keys) {
          this.coherence.noteInvalidation(st, k);
          st.l1?.delete(k);
        }
        this.hub.emitter.emit('invalidate', { policy: msg.policy, keys: msg.keys, source: 'bus' });
      },
      tags: (msg) => {
        const tags = new Set<string>();
        for (const [t, e] of msg.tags) {
          tags.add(t);
          this.coherence.applyRemoteTagEpoch(t, e);
        }
        this.coherence.noteTagInvalidation(tags);
        this.coherence.noteTagsMovedEverywhere();
        this.hub.emitter.emit('invalidate', { policy: '*', tags: [...tags], source: 'bus' });
      },
      namespace: (msg) => {
        const st = this.registry.find(msg.policy);
        if (st === undefined) return;
        st.nsEpoch = msg.epoch ?? undefined;
        this.coherence.clearPolicyLocally(st);
        this.hub.emitter.emit('invalidate', { policy: msg.policy, namespace: true, source: 'bus' });
      },
    };
    (handlers[m.type] as (m: BusMessage) => void)(m);
    this.hub.emitter.emit('bus', { message: m, receivedAt });
  }
}
