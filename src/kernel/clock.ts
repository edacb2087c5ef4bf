/**
 * Time and randomness, injected everywhere so tests and the benchmark run on virtual time with
 * reproducible choices instead of sleeping.
 */
import { seededRandom as seedRandom } from './seeded-random';

/** Cancels a scheduled callback; calling it twice is harmless. */
export type Cancel = () => void;

/** A source of time in milliseconds and a way to run a callback later. */
export interface Clock {
  /** Milliseconds on a monotonic scale (only differences matter). */
  now(): number;
  /** Runs `callback` once after `delayMillis`; returns a function that cancels it. */
  setTimeout(callback: () => void, delayMillis: number): Cancel;
}

/** A uniform random number in [0, 1), like `Math.random`. */
export type RandomSource = () => number;

/** The real clock: `performance.now()` and timers that do not keep the process alive. */
export const systemClock: Clock = Object.freeze({
  now: () => performance.now(),
  setTimeout(callback: () => void, delayMillis: number): Cancel {
    const timer = setTimeout(callback, delayMillis);
    timer.unref();
    return () => clearTimeout(timer);
  },
});

/** `Math.random`. */
export const mathRandom: RandomSource = () => Math.random();

/** A seeded pseudo-random source (mulberry32): the same seed gives the same sequence. */
export const seededRandom: (seed: number) => RandomSource = seedRandom;

interface Timer {
  readonly atMillis: number;
  readonly sequence: number;
  readonly callback: () => void;
}

/**
 * A clock that moves only when told to. `advance()` runs every timer that falls due, in time
 * order, with `now()` set to each timer's due time while it runs.
 */
export class ManualClock implements Clock {
  #nowMillis: number;
  #timers: Timer[] = [];
  #sequence = 0;

  constructor(startMillis = 0) {
    this.#nowMillis = startMillis;
  }

  now(): number {
    return this.#nowMillis;
  }

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
      this.#nowMillis = next.atMillis;
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
