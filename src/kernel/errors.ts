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
  /** A slot move cannot start as asked (unknown or unreachable shard, schema mismatch, overlapping move, last shard, slots out of range); nothing changed. */
  MOVE_REFUSED: 'E_MOVE_REFUSED',
  /** A slot move stopped before it finished (fence timeout, verification mismatch, lost lock); `resume` or `abort` it. */
  MOVE_FAILED: 'E_MOVE_FAILED',
  /** A shard refused a statement because the caller's topology is older than a slot move (or the slot is fenced for one): reload the topology and retry. Retryable. */
  STALE_TOPOLOGY: 'E_STALE_TOPOLOGY',
  /** A shard's primary is down, or was demoted (a standby was promoted in its place): the statement was not sent. Retryable. */
  PRIMARY_UNAVAILABLE: 'E_PRIMARY_UNAVAILABLE',
  /** A read-your-writes read whose position no replica confirmed in time while the primary is unavailable. Retryable. */
  READ_YOUR_WRITES_UNAVAILABLE: 'E_READ_YOUR_WRITES_UNAVAILABLE',
  /** A replica refused for reads: it is not proven to stream from its shard's primary (another shard's standby, a promoted server, no identity). */
  REPLICA_REFUSED: 'E_REPLICA_REFUSED',
  /** A stream reading a replica lost it (no answer within `readTimeoutMillis`, or the connection broke) after it had handed over rows: stopped rather than repeat or miss rows elsewhere. Retryable. */
  REPLICA_STREAM_INTERRUPTED: 'E_REPLICA_STREAM_INTERRUPTED',
  /** The topology catalog did not answer in time (connecting, a statement, a watch's heartbeat), or a publish's outcome could not be learnt (`outcomeUnknown`). */
  CATALOG_UNAVAILABLE: 'E_CATALOG_UNAVAILABLE',
} as const;

/** One of the stable error codes in {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Base class of every error raised by kysely-scale. */
export class KyselyScaleError<C extends ErrorCode = ErrorCode> extends Error {
  /** The stable code of this error. */
  readonly code: C;
  /** Structured context to act on (table, shard id, option name, …). Never holds a password. */
  readonly context: Readonly<Record<string, unknown>>;

  constructor(
    code: C,
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
export class ConfigError extends KyselyScaleError<typeof ErrorCodes.INVALID_CONFIG> {
  constructor(option: string, problem: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.INVALID_CONFIG, `Invalid option \`${option}\`: ${problem}`, {
      context: { option, ...context },
    });
  }
}
