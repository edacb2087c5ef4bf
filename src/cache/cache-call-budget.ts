/**
 * One deadline for every cache call: how long a call may wait on Redis in total, L2 commands and
 * bus publishes together (`callTimeoutMillis`). Its time runs from the call's start, except while
 * the caller's own code runs (the loader, `save`: the loader has the policy's own timeouts). Each
 * Redis step is raced against what is left; once it is spent, the call's remaining Redis steps fail
 * at once, as if Redis were down, so reads fall through to L1 and the loader and writes queue
 * their invalidation.
 *
 * ioredis's `commandTimeout` bounds one command, not a call: before this, a call that made three
 * commands against a Redis that hung waited three timeouts (`set` 1.5 s with a 500 ms timeout). A
 * step cut short keeps running in the background; the breaker counts it when its own timeout fires.
 *
 * The race costs a timer and a promise per step (~3 µs on an L2 hit, a third of the cache's own
 * cost there), so a step that the client's own command timeout already ends within what is left
 * (`boundMillis`: the L2 tier's `commandTimeoutMillis`, when it knows it) is not raced.
 */
import type { Clock } from '../kernel/clock';
import { CacheBackendUnavailableError } from './cache-errors';

const ignore = (): void => {};

/** How far past the deadline a step the client's timeout ends may go before it is raced instead. */
const BOUND_SLACK_MILLIS = 5;

/**
 * The Redis time left to one cache call.
 * @internal
 */
export class CallBudget {
  /** When the first Redis step began; the budget's time runs from there (-1: not yet). */
  private started = -1;
  /** Time spent in the caller's code (loader, save), which does not count. */
  private excluded = 0;
  private pausedAt = -1;
  /** Set when a step was cut: nothing is left. */
  private exhausted = false;

  constructor(
    private readonly clock: Clock,
    readonly totalMillis: number,
  ) {}

  /** Milliseconds left now. */
  remaining(): number {
    if (this.exhausted) return 0;
    if (this.started < 0) return this.totalMillis;
    const now = this.clock.monotonicNow();
    const paused = this.pausedAt >= 0 ? now - this.pausedAt : 0;
    return this.totalMillis - (now - this.started - this.excluded - paused);
  }

  /** The caller's code runs from now (its time does not count) until {@link CallBudget.resume}. */
  pause(): void {
    if (this.started >= 0 && this.pausedAt < 0) this.pausedAt = this.clock.monotonicNow();
  }

  resume(): void {
    if (this.pausedAt < 0) return;
    this.excluded += this.clock.monotonicNow() - this.pausedAt;
    this.pausedAt = -1;
  }

  /**
   * `step()`'s result, or a `CacheBackendUnavailableError` once the budget runs out first. `step`
   * is not started at all when nothing is left. `boundMillis`: a time within which `step` settles
   * by itself (one round of commands under the client's command timeout), if known.
   */
  wait<T>(step: () => Promise<T>, boundMillis?: number): Promise<T> {
    const left = this.remaining();
    if (left <= 0) return Promise.reject(this.spentError());
    // Time counts from the first step: what came before it was this process's own work.
    if (this.started < 0) this.started = this.clock.monotonicNow();
    // The client's own timeout ends this step within what is left (give or take a timer's
    // granularity: with the defaults both are 500 ms, and the first step starts a little after
    // the call): no race needed.
    if (boundMillis !== undefined && boundMillis <= left + BOUND_SLACK_MILLIS) return step();
    let p: Promise<T>;
    try {
      p = step();
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<T>((resolve, reject) => {
      const cancel = this.clock.setTimeout(() => {
        this.exhausted = true;
        p.catch(ignore); // settles later; the breaker has counted it by then
        reject(this.spentError());
      }, left);
      p.then(
        (v) => (cancel(), resolve(v)),
        (e: unknown) => (cancel(), reject(e)),
      );
    });
  }

  private spentError(): CacheBackendUnavailableError {
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
