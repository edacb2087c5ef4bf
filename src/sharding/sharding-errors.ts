/** Errors of routing and execution across shards. PostgreSQL's own errors are never wrapped: they reach the caller unchanged. */
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';

/** The codes a {@link RoutingError} may carry. */
export type RoutingErrorCode =
  | typeof ErrorCodes.NO_SHARD_KEY
  | typeof ErrorCodes.UNKNOWN_SHARD
  | typeof ErrorCodes.UNSUPPORTED_SCATTER
  | typeof ErrorCodes.UNROUTABLE_QUERY;

/** Raised for routing problems: a missing shard key, an unknown shard, an unroutable or unmergeable query. */
export class RoutingError extends KyselyScaleError<RoutingErrorCode> {
  constructor(code: RoutingErrorCode, message: string, context: Record<string, unknown> = {}) {
    super(code, message, { context });
  }
}

/** A statement inside a transaction targeted a shard other than the transaction's. Nothing of the transaction commits. */
export class CrossShardTransactionError extends KyselyScaleError<typeof ErrorCodes.CROSS_SHARD_TRANSACTION> {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.CROSS_SHARD_TRANSACTION, message, { context });
  }
}

/** A transaction that can no longer commit: its BEGIN failed (`cause`). Roll it back. */
export class TransactionAbortedError extends KyselyScaleError<typeof ErrorCodes.TRANSACTION_ABORTED> {
  constructor(message: string, cause: unknown, context: Record<string, unknown> = {}) {
    super(ErrorCodes.TRANSACTION_ABORTED, message, { cause, context });
  }
}

/**
 * A write split over several shards outside a transaction committed on `context.committed` and
 * failed on `context.failed`; `cause` is the first failure, PostgreSQL's error unchanged. For a
 * multi-row insert, `context.failedRows` lists the positions (in the VALUES list, from 0) of the
 * rows that were not inserted, so exactly those can be sent again.
 */
export class PartialWriteError extends KyselyScaleError<typeof ErrorCodes.PARTIAL_WRITE> {
  constructor(message: string, cause: unknown, context: { committed: string[]; failed: string[]; failedRows?: number[] }) {
    super(ErrorCodes.PARTIAL_WRITE, message, { cause, context });
  }
}

/**
 * The ShardedDialect was used after `db.destroy()` closed its pools. A dialect cannot be reopened
 * (a new Kysely on the same dialect fails too): create a new ShardedDialect and a new Kysely on it.
 */
export class DialectDestroyedError extends KyselyScaleError<typeof ErrorCodes.DESTROYED> {
  constructor() {
    super(
      ErrorCodes.DESTROYED,
      'The ShardedDialect was destroyed (db.destroy() closed its pools) and cannot be reopened, not even by a new Kysely on it: create a new ShardedDialect and a new Kysely with it.',
    );
  }
}
