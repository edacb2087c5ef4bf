/** Errors of the multi-level cache. */
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';

/** A serialized cache value exceeds the configured maximum size. */
export class CacheValueTooLargeError extends KyselyScaleError<typeof ErrorCodes.CACHE_VALUE_TOO_LARGE> {
  constructor(sizeBytes: number, maxBytes: number, context: Record<string, unknown> = {}) {
    super(
      ErrorCodes.CACHE_VALUE_TOO_LARGE,
      `Cache value is ${sizeBytes} bytes serialized, over the limit of ${maxBytes} bytes (option \`maxValueBytes\`)`,
      { context: { sizeBytes, maxBytes, ...context } },
    );
  }
}

/** A cache policy name that the cache was not configured with. */
export class UnknownCachePolicyError extends KyselyScaleError<typeof ErrorCodes.UNKNOWN_CACHE_POLICY> {
  constructor(policy: string, known: readonly string[]) {
    super(
      ErrorCodes.UNKNOWN_CACHE_POLICY,
      `Unknown cache policy \`${policy}\`; configured policies: ${known.join(', ') || '(none)'}`,
      { context: { policy, known } },
    );
  }
}

/** A cache loader exceeded its hard timeout (and no stale value could be served instead). */
export class CacheLoaderTimeoutError extends KyselyScaleError<typeof ErrorCodes.CACHE_LOADER_TIMEOUT> {
  constructor(key: string, timeoutMillis: number) {
    super(ErrorCodes.CACHE_LOADER_TIMEOUT, `Cache loader for \`${key}\` exceeded its hard timeout of ${timeoutMillis} ms`, {
      context: { key, timeoutMillis },
    });
  }
}

/** A value the cache serializer cannot encode; `context.path` says where in the value. */
export class CacheSerializationError extends KyselyScaleError<typeof ErrorCodes.CACHE_SERIALIZATION> {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.CACHE_SERIALIZATION, message, { context });
  }
}

/** The L2 tier is unavailable (timeout, disconnected, circuit open). Used inside the cache; reads fall through instead. */
export class CacheBackendUnavailableError extends KyselyScaleError<typeof ErrorCodes.CACHE_BACKEND_UNAVAILABLE> {
  constructor(message: string, options: { cause?: unknown; context?: Record<string, unknown> } = {}) {
    super(ErrorCodes.CACHE_BACKEND_UNAVAILABLE, message, options);
  }
}

/**
 * A cache key that is not a string, a safe integer or a bigint (`undefined`, `null`, a float, an
 * object, …). Carries the serialization code: the cache cannot encode it as a key.
 */
export class CacheKeyError extends KyselyScaleError<typeof ErrorCodes.CACHE_SERIALIZATION> {
  constructor(key: unknown, problem = "a key is a string, or a safe integer or bigint (used as its base-10 text, so 1, 1n and '1' are one entry)") {
    super(ErrorCodes.CACHE_SERIALIZATION, `Invalid cache key ${describeKey(key)}: ${problem}`, { context: { keyType: key === null ? 'null' : typeof key } });
  }
}

function describeKey(key: unknown): string {
  if (typeof key === 'number') return String(key);
  if (key === null || key === undefined) return String(key);
  return `of type ${typeof key}`;
}
