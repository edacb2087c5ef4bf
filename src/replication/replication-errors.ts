/** Errors of replication: a shard's primary that cannot take a statement, a read-your-writes read no server can serve, a stream that lost its replica mid-way. */
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';

/**
 * The shard's primary is down (its last check or connection failed) or demoted (a standby of the
 * shard was promoted in its place): the statement was not sent to it. `context` names the shard
 * and the server (password redacted); `cause` is the connection error, when there was one.
 */
export class PrimaryUnavailableError extends KyselyScaleError<typeof ErrorCodes.PRIMARY_UNAVAILABLE> {
  /** Always true: nothing ran, so it is safe to retry once the primary is back (or a new one is published). */
  readonly retryable = true;
  constructor(message: string, context: { shardId: string; server: string; reason: string }, cause?: unknown) {
    super(ErrorCodes.PRIMARY_UNAVAILABLE, message, { cause, context });
  }
}

/**
 * A read inside a read-your-writes context that no replica confirmed (none replayed the caller's
 * last write within the wait) while the shard's primary could not serve it. Nothing stale was returned.
 */
export class ReadYourWritesUnavailableError extends KyselyScaleError<typeof ErrorCodes.READ_YOUR_WRITES_UNAVAILABLE> {
  /** Always true: retry once a replica catches up or the primary returns. */
  readonly retryable = true;
  constructor(message: string, context: { shardId: string; requiredPosition: string }, cause?: unknown) {
    super(ErrorCodes.READ_YOUR_WRITES_UNAVAILABLE, message, { cause, context });
  }
}

/**
 * A stream (`.stream()`) reading a replica lost it after rows had already been handed over: the
 * replica did not answer a chunk within `readTimeoutMillis`, or its connection broke. It left
 * rotation at once. The stream stopped instead of continuing on another server, where rows would
 * be repeated or missed. `context` names the shard, the replica (password redacted) and how many
 * rows were handed over; `cause` is the deadline or connection error.
 */
export class ReplicaStreamInterruptedError extends KyselyScaleError<typeof ErrorCodes.REPLICA_STREAM_INTERRUPTED> {
  /** Always true: running the stream again starts it on another replica or the primary. */
  readonly retryable = true;
  constructor(message: string, context: { shardId: string; server: string; rowsHandedOver: number }, cause?: unknown) {
    super(ErrorCodes.REPLICA_STREAM_INTERRUPTED, message, { cause, context });
  }
}
