/**
 * One deadline for every cache call: how long a call may wait on Redis in total, L2 commands and
 * bus publishes together (`callTimeoutMillis`). Each wait is raced against what is left of it; once
 * it is spent, the call's remaining Redis steps fail at once, as if Redis were down, so reads fall
 * through to L1 and the loader and writes queue their invalidation. Time spent in the caller's
 * loader or `save` is not counted (the loader has the policy's own timeouts).
 *
 * ioredis's `commandTimeout` bounds one command, not a call: before this, a call that made three
 * commands against a Redis that hung waited three timeouts (`set` 1.5 s with a 500 ms timeout). A
 * command cut short keeps running in the background; the breaker counts it when its own timeout fires.
 */
import type { Clock } from '../kernel/clock';
import { CacheBackendUnavailableError } from './cache-errors';

const ignore = (): void => {};

/**
 * The Redis time left to one cache call.
 * @internal
 */
export class CallBudget {
  private left: number;
  /** Waits in flight; while there are any, the budget is being spent (parallel waits count once). */
  private inflight = 0;
  private since = 0;

  constructor(
    private readonly clock: Clock,
    readonly totalMillis: number,
  ) {
    this.left = totalMillis;
  }

  /** Milliseconds left now. */
  remaining(): number {
    return this.inflight > 0 ? this.left - (this.clock.monotonicNow() - this.since) : this.left;
  }

  /**
   * `step()`'s result, or a `CacheBackendUnavailableError` once the budget runs out first. `step`
   * is not started at all when nothing is left.
   */
  wait<T>(step: () => Promise<T>): Promise<T> {
    const left = this.remaining();
    if (left <= 0) return Promise.reject(this.exhausted());
    if (this.inflight++ === 0) this.since = this.clock.monotonicNow();
    let p: Promise<T>;
    try {
      p = step();
    } catch (error) {
      this.finish();
      return Promise.reject(error);
    }
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const end = (): boolean => {
        if (done) return false;
        done = true;
        cancel();
        this.finish();
        return true;
      };
      const cancel = this.clock.setTimeout(() => {
        if (!end()) return;
        this.left = 0;
        p.catch(ignore); // settles later; the breaker has counted it by then
        reject(this.exhausted());
      }, left);
      p.then(
        (v) => void (end() && resolve(v)),
        (e: unknown) => void (end() && reject(e)),
      );
    });
  }

  private finish(): void {
    if (--this.inflight === 0) this.left -= this.clock.monotonicNow() - this.since;
  }

  private exhausted(): CacheBackendUnavailableError {
    return new CacheBackendUnavailableError(`Redis did not answer within the call's deadline (callTimeoutMillis: ${this.totalMillis})`, {
      context: { callTimeoutMillis: this.totalMillis },
    });
  }
}

/**
 * Makes the budget of each call.
 * @internal
 */
export class CallBudgets {
  constructor(
    private readonly clock: Clock,
    private readonly millis: number,
  ) {}

  start(): CallBudget {
    return new CallBudget(this.clock, this.millis);
  }
}
