/**
 * The cache's side of the invalidation bus: publishing its invalidations (within the call's
 * deadline), applying the other instances' ones, forgetting what a dropped subscription could have
 * missed, and bounding L1 while the bus cannot be trusted.
 *
 * The bound: L1 entries are served only while the bus was confirmed live (subscribed, heartbeat
 * answered) within `busSilenceMillis`. Past that, every L1 is cleared and takes no fills until the
 * bus is confirmed again, when it is cleared once more (messages may have been missed) and pending
 * invalidations are replayed. When this process's own event loop stalled past the deadline (the
 * heartbeat could not run), the bus gets one more heartbeat first. Before, an instance whose bus could not deliver served values older
 * than other instances' acknowledged writes for the whole outage.
 */
import type { Cancel, Clock } from '../kernel/clock';
import type { CallBudget } from './cache-call-budget';
import type { CacheCoherence } from './cache-coherence';
import { CacheBackendUnavailableError } from './cache-errors';
import type { CacheEventHub } from './cache-events';
import type { PendingInvalidations } from './cache-pending-invalidations';
import type { PolicyRegistry } from './cache-policy-state';
import type { BusMessage, InvalidationBus } from './invalidation-bus';

/** A watchdog this late says the event loop was blocked, not that the bus was. */
const STALL_MILLIS = 100;

/** @internal */
export class CacheBusLink {
  /** Messages received from other instances, published, and reconnects of the subscriber. */
  received = 0;
  published = 0;
  reconnects = 0;
  /** Times L1 was cleared and bypassed because the bus stayed silent past `busSilenceMillis`. */
  silences = 0;
  /** When the bus was last confirmed live (this cache's monotonic clock). */
  private lastLive = 0;
  private watchdog: Cancel | null = null;
  /** When the watchdog was due. */
  private dueAt = 0;
  /** Whether the current silence already got one more heartbeat because this process had stalled. */
  private stallGraceUsed = false;
  /** Whether L1 is suspended until the bus is confirmed live again. */
  private suspended = false;

  constructor(
    private readonly bus: InvalidationBus | undefined,
    private readonly registry: PolicyRegistry,
    private readonly coherence: CacheCoherence,
    private readonly pending: PendingInvalidations,
    private readonly hub: CacheEventHub,
    private readonly clock: Clock,
    private readonly silenceMillis: number,
  ) {}

  /** Whether L1 is being bypassed because the bus stayed silent. */
  get l1Suspended(): boolean {
    return this.suspended;
  }

  /**
   * Starts applying the bus's messages and watching its liveness; `onBack` runs when what was
   * queued should be replayed (the bus reconnected, came back from a silence, or can publish
   * again). Returns the functions that stop listening.
   */
  listen(onBack: () => void): (() => void)[] {
    const bus = this.bus;
    if (bus === undefined) return [];
    // A bus not subscribed yet (Redis down at boot) gets the same bound, counted from now.
    this.lastLive = this.clock.monotonicNow();
    this.arm();
    return [
      bus.subscribe((m) => this.apply(m)),
      bus.onReconnect(() => {
        this.reconnects++;
        // Pub/sub may have dropped messages while disconnected: forget everything local that they could have invalidated.
        this.coherence.forgetAll();
        this.live(onBack);
        onBack();
      }),
      bus.onLive(() => this.live(onBack)),
      bus.onRecover(onBack),
      () => {
        this.watchdog?.();
        this.watchdog = null;
      },
    ];
  }

  private live(onBack: () => void): void {
    this.lastLive = this.clock.monotonicNow();
    this.stallGraceUsed = false;
    if (this.suspended) {
      this.suspended = false;
      this.coherence.forgetAll();
      this.coherence.resumeL1();
      onBack();
    }
    if (this.watchdog === null) this.arm();
  }

  private arm(delayMillis = this.silenceMillis - (this.clock.monotonicNow() - this.lastLive)): void {
    const delay = Math.max(0, delayMillis);
    this.dueAt = this.clock.monotonicNow() + delay;
    this.watchdog = this.clock.setTimeout(this.check, delay);
  }

  private readonly check = (): void => {
    this.watchdog = null;
    const now = this.clock.monotonicNow();
    if (now - this.lastLive < this.silenceMillis) {
      this.arm();
      return;
    }
    // Fired late: this process's event loop stalled, so neither the heartbeat nor its answer could
    // run. Give the bus one more heartbeat before calling it silent (a stalled loop serves no I/O).
    if (now - this.dueAt > STALL_MILLIS && !this.stallGraceUsed && this.bus !== undefined) {
      this.stallGraceUsed = true;
      this.arm(this.bus.heartbeatIntervalMillis + STALL_MILLIS * 5);
      return;
    }
    this.suspended = true;
    this.silences++;
    this.coherence.suspendL1();
    this.hub.emitter.emit('error', {
      error: new CacheBackendUnavailableError(`The invalidation bus was not confirmed live for ${this.silenceMillis} ms: L1 is cleared and bypassed until it is`, {
        context: { busSilenceMillis: this.silenceMillis },
      }),
    });
  };

  /** Publishes `message` within `budget`; when the bus fails, reports it and runs `onFailure` (to queue the invalidation). */
  async publish(message: BusMessage, budget: CallBudget, onFailure: () => void): Promise<void> {
    const bus = this.bus;
    if (bus === undefined) return;
    try {
      await budget.wait(() => bus.publish(message));
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
        // A write of this policy queued before must not come back carrying the new epoch.
        this.pending.demoteWrites(msg.policy);
        this.hub.emitter.emit('invalidate', { policy: msg.policy, namespace: true, source: 'bus' });
      },
    };
    (handlers[m.type] as (m: BusMessage) => void)(m);
    this.hub.emitter.emit('bus', { message: m, receivedAt });
  }
}
