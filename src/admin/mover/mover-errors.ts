/** Errors of the slot mover. Operational outcomes are result objects; these are for requests that cannot start. */
import { ErrorCodes, KyselyScaleError } from '../../kernel/errors';

/** Why a move was refused before anything changed. */
export type MoveRefusal =
  | 'unknown-shard'
  | 'unreachable'
  | 'schema-mismatch'
  | 'overlap'
  | 'last-shard'
  | 'slot-range'
  | 'no-tables'
  | 'null-keys'
  | 'nothing-to-move'
  | 'no-catalog'
  | 'catalog-unreachable'
  | 'unsharded-tables'
  | 'unsharded-target'
  | 'unsharded-target-not-empty'
  | 'unsharded-holder'
  | 'not-found'
  | 'migration-failed'
  | 'shard-exists'
  | 'table-locked';

/** A move request that cannot start; `context.reason` says why, and nothing was changed. */
export class MoveRefusedError extends KyselyScaleError<typeof ErrorCodes.MOVE_REFUSED> {
  readonly reason: MoveRefusal;
  constructor(reason: MoveRefusal, message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.MOVE_REFUSED, message, { context: { reason, ...context } });
    this.reason = reason;
  }
}

/** A move that stopped part-way (it can be resumed or aborted); `context.phase` says where. */
export class MoveFailedError extends KyselyScaleError<typeof ErrorCodes.MOVE_FAILED> {
  constructor(message: string, context: Record<string, unknown> = {}, cause?: unknown) {
    super(ErrorCodes.MOVE_FAILED, message, { context, ...(cause === undefined ? {} : { cause }) });
  }
}

/**
 * A shard did not answer within a deadline of the mover's (`statementTimeoutMillis`, or
 * `copyIdleTimeoutMillis` of silence in a COPY): frozen, overloaded or cut off. The session was
 * dropped (its transaction ends with it); the move stopped where it was: resume once the shard
 * answers. `verify` reports it as a refusal (`unreachable`). `context`: `shard`, `waitedFor`,
 * `millis`, `option`.
 */
export class ShardSilentError extends MoveFailedError {
  readonly shard: string;
  readonly waitedFor: string;
  readonly millis: number;
  readonly option: string;

  constructor(shard: string, waitedFor: string, millis: number, option: string) {
    super(
      `Shard "${shard}" did not answer ${waitedFor} within ${millis} ms (${option}; frozen, overloaded or unreachable?): the mover dropped its session and stopped. Resume once the shard answers (or abort).`,
      { shard, waitedFor, millis, option },
    );
    this.shard = shard;
    this.waitedFor = waitedFor;
    this.millis = millis;
    this.option = option;
  }
}
