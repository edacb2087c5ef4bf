/** The events a {@link TieredCache} emits, and the small hub its parts report through. */
import { EventEmitter } from 'node:events';
import type { BusMessage } from './invalidation-bus';
import type { PolicyState } from './cache-policy-state';

/** Events of `TieredCache`. Listeners must not throw. */
export interface CacheEvents {
  hit: [{ policy: string; key: string; tier: 'l1' | 'l2' }];
  miss: [{ policy: string; key: string }];
  write: [{ policy: string; key: string }];
  invalidate: [{ policy: string; keys?: readonly string[]; tags?: readonly string[]; namespace?: boolean; source: 'local' | 'bus' }];
  /** A bus message from another instance was applied; `receivedAt` is a `clock.monotonicNow()` reading. */
  bus: [{ message: BusMessage; receivedAt: number }];
  /** Something failed and the cache carried on (L2 down, value too large on load, …). */
  error: [{ policy?: string; key?: string; error: unknown }];
}

/**
 * The cache's emitter, plus what the hit path needs to know about its listeners without asking
 * the emitter on every read.
 * @internal
 */
export class CacheEventHub {
  readonly emitter = new EventEmitter<CacheEvents>();
  /** Whether anyone listens to `hit` (kept up to date by the emitter's listener events). */
  listeningHits = false;

  constructor() {
    const raw = this.emitter as EventEmitter;
    raw.on('newListener', (e: string) => {
      if (e === 'hit') this.listeningHits = true;
    });
    raw.on('removeListener', () => {
      this.listeningHits = this.emitter.listenerCount('hit') > 0;
    });
    // EventEmitter throws on 'error' without a listener; the cache reports errors, it never throws them.
    this.emitter.on('error', () => {});
  }

  miss(st: PolicyState, key: string): void {
    if (this.emitter.listenerCount('miss') > 0) this.emitter.emit('miss', { policy: st.policy.name, key });
  }

  /** An L2 command failed: counted on the policy (when known) and reported; the caller carries on. */
  l2Failed(st: PolicyState | undefined, key: string | undefined, error: unknown): void {
    if (st !== undefined) st.l2c.errors++;
    this.emitter.emit('error', { ...(st ? { policy: st.policy.name } : {}), ...(key !== undefined ? { key } : {}), error });
  }
}
