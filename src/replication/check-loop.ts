/**
 * One server's checks: its own timer on the injected clock and its own deadline per check, so a
 * server that hangs delays nobody else's checks. A check asked for while one runs shares it.
 */
import type { Cancel, Clock } from '../kernel/clock';

/** Runs `check` now and then every `intervalMillis` (measured from the end of the previous one) until stopped. */
export class CheckLoop {
  readonly #clock: Clock;
  readonly #check: () => Promise<void>;
  #intervalMillis: () => number;
  #running: Promise<void> | undefined;
  #cancel: Cancel | undefined;
  #stopped = false;

  /** @param intervalMillis read before each wait (a server that is down may be checked more often); 0 never schedules. */
  constructor(clock: Clock, intervalMillis: () => number, check: () => Promise<void>) {
    this.#clock = clock;
    this.#intervalMillis = intervalMillis;
    this.#check = check;
  }

  /** Starts the timer with a check now (no-op when the interval is 0). */
  start(): void {
    if (this.#intervalMillis() > 0) void this.now();
  }

  /** Checks now, or joins the check that is running; the timer restarts from its end. */
  now(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#running ??= this.#check()
      .catch(() => undefined) // a check records its own failure; nothing escapes the loop
      .finally(() => {
        this.#running = undefined;
        this.#schedule();
      });
    return this.#running;
  }

  /** Whether a check is running now. */
  get running(): boolean {
    return this.#running !== undefined;
  }

  /** Stops the timer; a running check finishes but schedules nothing. */
  stop(): void {
    this.#stopped = true;
    this.#cancel?.();
    this.#cancel = undefined;
  }

  #schedule(): void {
    this.#cancel?.();
    this.#cancel = undefined;
    const interval = this.#intervalMillis();
    if (this.#stopped || interval <= 0) return;
    this.#cancel = this.#clock.setTimeout(() => {
      this.#cancel = undefined;
      void this.now();
    }, interval);
  }
}
