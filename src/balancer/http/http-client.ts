/**
 * A balanced `fetch`: each call goes to an instance picked by the balancer; an idempotent call
 * whose connection fails is retried on an instance not tried yet.
 */
import { fetch, Headers, type Dispatcher, type RequestInit, type Response } from 'undici';
import type { Balancer } from '../balancer';
import { requireOptions } from '../balancer-option-checks';
import { ConfigError } from '../../kernel/errors';
import { NoInstanceAvailableError, RequestTimeoutError } from '../balancer-errors';
import { onRequestStart } from './http-request-start';
import { splitCredentials } from './http-credentials';
import { describeValue, requireInteger, requireNonNegative } from '../../kernel/validate';
import { isConnectionError, isIdempotent } from './http-retry';

/** Options of {@link createBalancedFetch}. */
export interface BalancedFetchOptions {
  /** The balancer whose instances' `address` is an HTTP origin (`http://host:port`). */
  readonly balancer: Balancer;
  /**
   * Most attempts of one idempotent call (the first included), each on a different instance.
   * @default 3
   */
  readonly maxAttempts?: number;
  /**
   * Deadline of one attempt up to the response headers, in ms; 0 uses the balancer's
   * `timeoutMillis` (30 s by default). A timed-out attempt is charged to its instance as a failure.
   * @default 0
   */
  readonly timeoutMillis?: number;
  /**
   * Status codes counted as failures for ejection and latency (the response is still returned).
   * @default status >= 500
   */
  readonly isFailureStatus?: (status: number) => boolean;
  /** undici dispatcher (agent) to send through. */
  readonly dispatcher?: Dispatcher;
}

/** Defaults of {@link BalancedFetchOptions}. */
export const BALANCED_FETCH_DEFAULTS = Object.freeze({ maxAttempts: 3, timeoutMillis: 0 });

const BALANCED_FETCH_OPTIONS_KEYS: Readonly<Record<keyof BalancedFetchOptions, true>> = {
  balancer: true,
  maxAttempts: true,
  timeoutMillis: true,
  isFailureStatus: true,
  dispatcher: true,
};

/** `fetch` init plus an affinity key for consistent hashing. */
export interface BalancedRequestInit extends RequestInit {
  /** Affinity key (user id, client IP) for the consistent-hash strategy. */
  readonly key?: string;
}

/** A fetch whose first argument is a path (and query) resolved against the picked instance. */
export type BalancedFetch = (path: string, init?: BalancedRequestInit) => Promise<Response>;

function isReplayable(body: RequestInit['body']): boolean {
  return (
    body === undefined ||
    body === null ||
    typeof body === 'string' ||
    body instanceof Uint8Array ||
    body instanceof ArrayBuffer ||
    body instanceof URLSearchParams
  );
}

/**
 * Creates a balanced fetch. The balancer counts a call in flight until its response headers
 * arrive; reading the body is the caller's. An idempotent call with a replayable body is retried on
 * an instance it has not tried yet, at most `maxAttempts` times in all, and only when the
 * connection failed before response headers came back, or the attempt timed out before the
 * request was written (still connecting: nothing was sent). A response, whatever its status, is
 * never retried; neither is a timeout after the request was sent.
 */
export function createBalancedFetch(options: BalancedFetchOptions): BalancedFetch {
  requireOptions('', options, BALANCED_FETCH_OPTIONS_KEYS);
  if (typeof options.balancer?.run !== 'function') throw new ConfigError('balancer', `must be a Balancer, got ${describeValue(options.balancer)}`);
  const maxAttempts = requireInteger('maxAttempts', options.maxAttempts ?? BALANCED_FETCH_DEFAULTS.maxAttempts, 1);
  const timeoutMillis = requireNonNegative('timeoutMillis', options.timeoutMillis ?? BALANCED_FETCH_DEFAULTS.timeoutMillis);
  const isFailureStatus = options.isFailureStatus ?? ((status: number) => status >= 500);
  const { balancer, dispatcher } = options;

  return async (path, init = {}) => {
    const { key, signal: callerSignal, ...fetchInit } = init;
    const retryable = isIdempotent(fetchInit.method ?? 'GET') && isReplayable(fetchInit.body);
    const tried = new Set<string>();
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      let sent = false;
      try {
        return await balancer.run(
          (instance, signal) => {
            tried.add(instance.id);
            // An address may carry credentials (`http://user:secret@host`): they travel as a Basic
            // authorization header (unless the call sets one), never in the URL, so no error
            // message built from the URL can show the password.
            const { url: origin, authorization } = splitCredentials(instance.address, `instances[${instance.id}].address`);
            let headers = fetchInit.headers;
            if (authorization !== undefined) {
              const merged = new Headers(fetchInit.headers);
              if (!merged.has('authorization')) merged.set('authorization', authorization);
              headers = merged;
            }
            return fetch(new URL(path, origin), {
              ...fetchInit,
              ...(headers === undefined ? {} : { headers }),
              signal,
              dispatcher: onRequestStart(dispatcher, () => (sent = true)),
            });
          },
          {
            exclude: tried,
            isFailure: (response) => isFailureStatus(response.status),
            ...(key === undefined ? {} : { key }),
            ...(timeoutMillis === 0 ? {} : { timeoutMillis }),
            // The caller's abort settles the call at once and is not charged to the instance.
            ...(callerSignal == null ? {} : { signal: callerSignal }),
          },
        );
      } catch (error) {
        // A retry that finds no instance left reports the connection failure that caused it.
        if (attempt > 1 && error instanceof NoInstanceAvailableError) throw lastError;
        const another = tried.size < balancer.instances().length;
        // A timeout before the request was written (still connecting) sent nothing: like a refused connection.
        const neverSent = isConnectionError(error) || (error instanceof RequestTimeoutError && !sent);
        if (!(retryable && attempt < maxAttempts && another && neverSent)) throw error;
        lastError = error;
      }
    }
  };
}
