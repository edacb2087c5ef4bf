/**
 * Errors raised by kysely-scale. Every error carries a stable `code` that programs can switch on
 * and a message that says what to change. PostgreSQL's own errors (with `code`, `detail`,
 * `constraint`, …) are never wrapped: they reach the caller unchanged.
 *
 * @packageDocumentation
 */

/** Stable error codes. New codes may be added; existing ones never change meaning. */
export const ErrorCodes = {
  /** A configuration option is missing or invalid; the message names the option. */
  INVALID_CONFIG: 'E_INVALID_CONFIG',
  /** A shard key value cannot be encoded (null, object, non-integer number, …). */
  INVALID_SHARD_KEY: 'E_INVALID_SHARD_KEY',
  /** A topology is malformed (duplicate ids, unowned slots, bad URLs, …). */
  INVALID_TOPOLOGY: 'E_INVALID_TOPOLOGY',
  /** A query on a sharded table names no shard key and the table's policy is `error`. */
  NO_SHARD_KEY: 'E_NO_SHARD_KEY',
  /** A shard id that the topology does not contain. */
  UNKNOWN_SHARD: 'E_UNKNOWN_SHARD',
  /** A statement inside a transaction targets a shard other than the one the transaction is bound to. */
  CROSS_SHARD_TRANSACTION: 'E_CROSS_SHARD_TRANSACTION',
  /** A transaction can no longer commit (its BEGIN failed); roll it back. */
  TRANSACTION_ABORTED: 'E_TRANSACTION_ABORTED',
  /** A write split over several shards (outside a transaction) committed on some shards and failed on others. */
  PARTIAL_WRITE: 'E_PARTIAL_WRITE',
  /** A scatter query whose result cannot be merged correctly across shards. */
  UNSUPPORTED_SCATTER: 'E_UNSUPPORTED_SCATTER',
  /** A query shape the router cannot route safely (e.g. a write that would touch several shards in one statement it cannot split). */
  UNROUTABLE_QUERY: 'E_UNROUTABLE_QUERY',
  /** The dialect (or another component) was used after `destroy()`. */
  DESTROYED: 'E_DESTROYED',
  /** The test cluster could not start (missing binaries, no Docker, …). */
  TEST_CLUSTER: 'E_TEST_CLUSTER',
  /** A cache value is larger than the configured maximum. */
  CACHE_VALUE_TOO_LARGE: 'E_CACHE_VALUE_TOO_LARGE',
  /** A cache policy name that was not configured. */
  UNKNOWN_CACHE_POLICY: 'E_UNKNOWN_CACHE_POLICY',
  /** A cache loader exceeded its hard timeout. */
  CACHE_LOADER_TIMEOUT: 'E_CACHE_LOADER_TIMEOUT',
  /** The balancer has no instance it may use. */
  NO_INSTANCE_AVAILABLE: 'E_NO_INSTANCE_AVAILABLE',
  /** No instance fits the budget of a cost-aware strategy. */
  BUDGET_EXCEEDED: 'E_BUDGET_EXCEEDED',
  /** A balanced call exceeded its timeout. */
  REQUEST_TIMEOUT: 'E_REQUEST_TIMEOUT',
  /** A value the cache serializer cannot encode (function, symbol, circular reference, …). */
  CACHE_SERIALIZATION: 'E_CACHE_SERIALIZATION',
  /** The L2 (Redis) tier could not serve a command: timeout, disconnected, or circuit open. Never surfaces from a cache read. */
  CACHE_BACKEND_UNAVAILABLE: 'E_CACHE_BACKEND_UNAVAILABLE',
  /** A topology was published that is not newer than the catalog's latest version (another operator published first). */
  TOPOLOGY_CONFLICT: 'E_TOPOLOGY_CONFLICT',
  /** Another operator holds the catalog's operator lock. */
  OPERATOR_BUSY: 'E_OPERATOR_BUSY',
} as const;

/** One of the stable error codes in {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Base class of every error raised by kysely-scale. */
export class KyselyScaleError extends Error {
  /** The stable code of this error. */
  readonly code: ErrorCode;
  /** Structured context to act on (table, shard id, option name, …). Never holds a password. */
  readonly context: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; context?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.context = Object.freeze({ ...(options.context ?? {}) });
  }
}

/** A configuration option is missing or invalid. `context.option` names it. */
export class ConfigError extends KyselyScaleError {
  constructor(option: string, problem: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.INVALID_CONFIG, `Invalid option \`${option}\`: ${problem}`, {
      context: { option, ...context },
    });
  }
}

/** A shard key value cannot be encoded under the key-encoding contract. */
export class ShardKeyError extends KyselyScaleError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.INVALID_SHARD_KEY, message, { context });
  }
}

/** A topology is malformed; the message says what to fix. */
export class TopologyError extends KyselyScaleError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.INVALID_TOPOLOGY, message, { context });
  }
}

/** Raised for routing problems: a missing shard key, an unknown shard, an unroutable or unmergeable query. */
export class RoutingError extends KyselyScaleError {
  constructor(code: ErrorCode, message: string, context: Record<string, unknown> = {}) {
    super(code, message, { context });
  }
}

/** A statement inside a transaction targeted a shard other than the transaction's. Nothing of the transaction commits. */
export class CrossShardTransactionError extends KyselyScaleError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.CROSS_SHARD_TRANSACTION, message, { context });
  }
}

/** A transaction that can no longer commit: its BEGIN failed (`cause`). Roll it back. */
export class TransactionAbortedError extends KyselyScaleError {
  constructor(message: string, cause: unknown, context: Record<string, unknown> = {}) {
    super(ErrorCodes.TRANSACTION_ABORTED, message, { cause, context });
  }
}

/**
 * A write split over several shards outside a transaction committed on `context.committed` and
 * failed on `context.failed`; `cause` is the first failure, PostgreSQL's error unchanged.
 */
export class PartialWriteError extends KyselyScaleError {
  constructor(message: string, cause: unknown, context: { committed: string[]; failed: string[] }) {
    super(ErrorCodes.PARTIAL_WRITE, message, { cause, context });
  }
}

// Connection parameters that carry secrets in a URL's query string.
const SECRET_PARAMS = ['password', 'sslpassword', 'sslkey', 'sslcert'];

/** Replaces the password (and secret query parameters) of a connection URL with `***`, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    for (const name of SECRET_PARAMS) if (parsed.searchParams.has(name)) parsed.searchParams.set(name, '***');
    return parsed.toString();
  } catch {
    return redactText(url);
  }
}

/**
 * Text (an error message, a command line) with the password of every connection URL in it
 * replaced by `***`. It errs towards hiding: everything from `user:` to the last `@` of the line
 * goes, since a password may hold spaces or `@`; quoted `password='…'` values go whole.
 */
export function redactText(text: string): string {
  return text
    .replace(/(\/\/[^:/@\s]*:).*@/g, '$1***@')
    .replace(/((?:password|sslpassword|sslkey)\s*=\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^&\s]*)/gi, '$1***');
}

// ---- Cache (src/cache) -------------------------------------------------------------------------

/** A serialized cache value exceeds the configured maximum size. */
export class CacheValueTooLargeError extends KyselyScaleError {
  constructor(sizeBytes: number, maxBytes: number, context: Record<string, unknown> = {}) {
    super(
      ErrorCodes.CACHE_VALUE_TOO_LARGE,
      `Cache value is ${sizeBytes} bytes serialized, over the limit of ${maxBytes} bytes (option \`maxValueBytes\`)`,
      { context: { sizeBytes, maxBytes, ...context } },
    );
  }
}

/** A cache policy name that the cache was not configured with. */
export class UnknownCachePolicyError extends KyselyScaleError {
  constructor(policy: string, known: readonly string[]) {
    super(
      ErrorCodes.UNKNOWN_CACHE_POLICY,
      `Unknown cache policy \`${policy}\`; configured policies: ${known.join(', ') || '(none)'}`,
      { context: { policy, known } },
    );
  }
}

/** A cache loader exceeded its hard timeout (and no stale value could be served instead). */
export class CacheLoaderTimeoutError extends KyselyScaleError {
  constructor(key: string, timeoutMillis: number) {
    super(ErrorCodes.CACHE_LOADER_TIMEOUT, `Cache loader for \`${key}\` exceeded its hard timeout of ${timeoutMillis} ms`, {
      context: { key, timeoutMillis },
    });
  }
}

/** A value the cache serializer cannot encode; `context.path` says where in the value. */
export class CacheSerializationError extends KyselyScaleError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.CACHE_SERIALIZATION, message, { context });
  }
}

/** The L2 tier is unavailable (timeout, disconnected, circuit open). Used inside the cache; reads fall through instead. */
export class CacheBackendUnavailableError extends KyselyScaleError {
  constructor(message: string, options: { cause?: unknown; context?: Record<string, unknown> } = {}) {
    super(ErrorCodes.CACHE_BACKEND_UNAVAILABLE, message, options);
  }
}

/** A topology was published that is not newer than the catalog's latest: reload, re-plan and publish again. */
export class TopologyConflictError extends KyselyScaleError {
  constructor(message: string, context: { latest: number; attempted: number }) {
    super(ErrorCodes.TOPOLOGY_CONFLICT, message, { context });
  }
}

/** Another operator holds the catalog's operator lock: wait for it to finish, or find it with the context. */
export class OperatorBusyError extends KyselyScaleError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.OPERATOR_BUSY, message, { context });
  }
}
