/**
 * Time and randomness, injected everywhere (cache TTLs, breaker cooldowns, balancer latencies,
 * health checks, replica checks) so tests move a {@link ManualClock} forward instead of sleeping,
 * and simulations make reproducible choices.
 */
import { seededRandom as mulberry32 } from './seeded-random';

/** Cancels a scheduled callback; calling it twice is harmless. */
export type Cancel = () => void;

/** A source of time and a way to run a callback later. */
export interface Clock {
  /**
   * Wall-clock milliseconds since the epoch. Use it for times other processes read (expiry times
   * stored in Redis), so instances agree on it.
   */
  now(): number;
  /** Monotonic milliseconds with sub-millisecond precision; only differences matter (latencies, intervals). */
  monotonicNow(): number;
  /** Runs `callback` once after `delayMillis`; returns a function that cancels it. Never keeps the process alive. */
  setTimeout(callback: () => void, delayMillis: number): Cancel;
}

/** A uniform random number in [0, 1), like `Math.random`. */
export type RandomSource = () => number;

/** The real clock: `Date.now()`, `performance.now()` and unref'd Node timers. */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  monotonicNow: () => performance.now(),
  setTimeout(callback: () => void, delayMillis: number): Cancel {
    const timer = setTimeout(callback, delayMillis);
    timer.unref();
    return () => clearTimeout(timer);
  },
});

/** `Math.random`. */
export const mathRandom: RandomSource = () => Math.random();

/** A seeded pseudo-random source (mulberry32): the same seed gives the same sequence. */
export const seededRandom: (seed: number) => RandomSource = mulberry32;

interface Timer {
  readonly atMillis: number;
  readonly sequence: number;
  readonly callback: () => void;
}

/**
 * A clock that moves only when told to; `now()` and `monotonicNow()` read the same time.
 * `advance()` runs every timer that falls due, in time order (ties in scheduling order), with the
 * time set to each timer's due time while it runs.
 */
export class ManualClock implements Clock {
  #nowMillis: number;
  #timers: Timer[] = [];
  #sequence = 0;

  /** @param startMillis the time it starts at; a wall-clock-like value by default. */
  constructor(startMillis = 1_700_000_000_000) {
    this.#nowMillis = startMillis;
  }

  readonly now = (): number => this.#nowMillis;

  readonly monotonicNow = (): number => this.#nowMillis;

  setTimeout(callback: () => void, delayMillis: number): Cancel {
    const timer: Timer = { atMillis: this.#nowMillis + Math.max(0, delayMillis), sequence: this.#sequence++, callback };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer);
    };
  }

  /** Number of timers waiting. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `millis`, running the timers that fall due on the way. */
  advance(millis: number): void {
    const target = this.#nowMillis + millis;
    for (;;) {
      const next = this.#nextDue(target);
      if (next === undefined) break;
      this.#timers = this.#timers.filter((t) => t !== next);
      this.#nowMillis = Math.max(this.#nowMillis, next.atMillis);
      next.callback();
    }
    this.#nowMillis = target;
  }

  #nextDue(target: number): Timer | undefined {
    let best: Timer | undefined;
    for (const t of this.#timers) {
      if (t.atMillis > target) continue;
      if (best === undefined || t.atMillis < best.atMillis || (t.atMillis === best.atMillis && t.sequence < best.sequence)) best = t;
    }
    return best;
  }
}
