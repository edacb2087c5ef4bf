/**
 * A client-side deadline on one wait. A server that stops answering mid-conversation (SIGSTOP, a
 * hung host, a dropped network path) enforces no `statement_timeout` of its own and never closes
 * the socket, so every call that waits on one races a timer of its own.
 */
import { systemClock, type Clock } from './clock';

/** A wait that got no answer in time; `what` names what was waited for (never a password). */
export class DeadlineError extends Error {
  readonly what: string;
  readonly millis: number;

  constructor(what: string, millis: number) {
    super(`${what} did not answer within ${millis} ms`);
    this.name = 'DeadlineError';
    this.what = what;
    this.millis = millis;
  }
}

/** Options of {@link withDeadline}. */
export interface DeadlineOptions {
  /** @default systemClock */
  readonly clock?: Clock;
  /** Runs once the deadline passed, before the rejection: close what is still waiting (a socket, a client). */
  readonly onLate?: () => void;
}

/**
 * `promise`, or a {@link DeadlineError} naming `what` once `millis` passed. A late promise is left
 * to settle by itself (its rejection is handled, never unhandled).
 */
export function withDeadline<T>(promise: Promise<T>, millis: number, what: string, options: DeadlineOptions = {}): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const cancel = (options.clock ?? systemClock).setTimeout(() => {
      if (settled) return;
      settled = true;
      options.onLate?.();
      reject(new DeadlineError(what, millis));
    }, millis);
    promise.then(
      (value) => {
        if (settled) return;
        settled = true;
        cancel();
        resolve(value);
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        cancel();
        reject(error as Error);
      },
    );
  });
}
