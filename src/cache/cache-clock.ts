/**
 * Time as the cache sees it. Every TTL, grace period, breaker cooldown, loader timeout and hot-key
 * decay reads this clock, so tests move time forward instead of sleeping.
 */
export interface CacheClock {
  /** Milliseconds since the epoch. Stored in L2 entries, so instances must agree on it (wall clock). */
  now(): number;
  /** Schedules `fn` after `delayMillis`; used for loader timeouts. */
  setTimeout(fn: () => void, delayMillis: number): unknown;
  /** Cancels a timer returned by {@link CacheClock.setTimeout}. */
  clearTimeout(handle: unknown): void;
}

/** The real clock: `Date.now()` and Node timers (unref'd so a pending timeout never holds the process open). */
export const systemClock: CacheClock = Object.freeze({
  now: Date.now,
  setTimeout(fn: () => void, delayMillis: number): unknown {
    const t = setTimeout(fn, delayMillis);
    t.unref();
    return t;
  },
  clearTimeout(handle: unknown): void {
    clearTimeout(handle as NodeJS.Timeout);
  },
});

/** A clock that only moves when told to; for tests and simulations. */
export class ManualClock implements CacheClock {
  private current: number;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;

  constructor(startMillis = 1_700_000_000_000) {
    this.current = startMillis;
  }

  now = (): number => this.current;

  setTimeout(fn: () => void, delayMillis: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.current + delayMillis, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Moves time forward and runs, in time order, every timer that became due. */
  advance(millis: number): void {
    const target = this.current + millis;
    for (;;) {
      let dueId = -1;
      let dueAt = Infinity;
      for (const [id, t] of this.timers) {
        if (t.at <= target && t.at < dueAt) {
          dueAt = t.at;
          dueId = id;
        }
      }
      if (dueId === -1) break;
      const timer = this.timers.get(dueId)!;
      this.timers.delete(dueId);
      this.current = Math.max(this.current, timer.at);
      timer.fn();
    }
    this.current = target;
  }
}
