import { setTimeout as delay } from 'node:timers/promises';
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';

/** A point in time that every wait of one start shares, so the whole start is bounded once. */
export interface Deadline {
  readonly atMillis: number;
  readonly totalMillis: number;
  remainingMillis(): number;
}

/** A deadline `millis` from now. */
export function deadlineIn(millis: number): Deadline {
  const atMillis = Date.now() + millis;
  return Object.freeze({
    atMillis,
    totalMillis: millis,
    remainingMillis: () => Math.max(0, atMillis - Date.now()),
  });
}

/** Builds the error of the test cluster (code `E_TEST_CLUSTER`). */
export function testClusterError(message: string, context: Record<string, unknown> = {}, cause?: unknown): KyselyScaleError {
  return new KyselyScaleError(ErrorCodes.TEST_CLUSTER, message, { context, cause });
}

export interface PollOptions {
  readonly deadline: Deadline;
  /** What is awaited, for the timeout message (`PostgreSQL shard0-primary on 127.0.0.1:5433 to accept connections`). */
  readonly what: string;
  /** Time between probes; a probe is cheap (one loopback connection). */
  readonly intervalMillis?: number;
  /** Returns a reason to give up at once (e.g. the server process exited), or undefined to go on. */
  readonly abortReason?: () => string | undefined;
  /** Appended to the timeout message: what the user can do about it. */
  readonly timeoutHint?: string;
}

/**
 * Runs `probe` until it returns a value other than `undefined`, the deadline passes, or
 * `abortReason` reports a reason to stop. Probe errors count as "not yet" (servers refuse
 * connections while starting); the last one is kept as the cause of a timeout.
 */
export async function pollUntil<T>(probe: () => Promise<T | undefined>, options: PollOptions): Promise<T> {
  const interval = options.intervalMillis ?? 25;
  let lastError: unknown;
  for (;;) {
    const reason = options.abortReason?.();
    if (reason !== undefined) throw testClusterError(`Gave up waiting for ${options.what}: ${reason}`, {}, lastError);
    try {
      const value = await probe();
      if (value !== undefined) return value;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (options.deadline.remainingMillis() <= 0) {
      const detail = lastError instanceof Error ? ` (last attempt: ${lastError.message})` : '';
      throw testClusterError(
        `Timed out after ${options.deadline.totalMillis} ms waiting for ${options.what}${detail}. ` +
          (options.timeoutHint ?? 'Raise `startTimeoutMillis` if this machine is slow.'),
        {},
        lastError,
      );
    }
    await delay(Math.min(interval, options.deadline.remainingMillis()));
  }
}
