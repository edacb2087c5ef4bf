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

/** One piece of a move's state an abort could not remove: what a shard that did not answer still holds. */
export interface AbortLeftover {
  /** The shard that holds it. */
  readonly shard: string;
  /** The shard's role in the batch. */
  readonly role: 'source' | 'target';
  /** The batch (0-based, as `context.batch` of other mover errors). */
  readonly batch: number;
  /** The batch's slots (`0-1023`). */
  readonly slots: string;
  /** What is left there, in words. */
  readonly holds: string;
}

/**
 * The outcome of an abort that did everything it could on the shards that answer, and left the
 * rest: some shards of the move did not answer (stopped, frozen, cut off), so their part of the
 * rollback (or of a published batch's clean-up) waits for them. The move stays open; `resume`
 * refuses it; run `abort` again once those shards answer, and it finishes exactly what is left
 * (each step is idempotent). A {@link MoveFailedError} (`E_MOVE_FAILED`), as the abort's result
 * carries it. `context`: `reason` `abort-unfinished`, `moveId`, `shards` (those still holding
 * state of the move), `unreachable` (each shard found unreachable, and why), `left`
 * ({@link AbortLeftover}s), and `unsharded` (its phase) when a drain's unsharded step is left.
 * `unsharded`: that step's phase and the shards of it that did not answer.
 */
export function abortUnfinished(moveId: number, left: readonly AbortLeftover[], unreachable: ReadonlyMap<string, string>, unsharded?: { readonly phase: string; readonly shards: readonly string[] }): MoveFailedError {
  const shards = [...new Set([...left.map((l) => l.shard), ...(unsharded?.shards ?? [])])];
  const why = shards.map((s) => `"${s}"${unreachable.has(s) ? ` (${unreachable.get(s)})` : ''}`).join(', ');
  const pieces = left.map((l) => `on "${l.shard}" (${l.role} of batch ${l.batch + 1}): ${l.holds}`);
  if (unsharded !== undefined) pieces.push(`the drain's unsharded step (phase ${unsharded.phase}) on ${unsharded.shards.map((s) => `"${s}"`).join(' and ')}`);
  return new MoveFailedError(
    `The abort of move ${moveId} could not reach ${shards.length === 1 ? 'shard' : 'shards'} ${why}: it rolled back (or finished) everything on the shards that answer, ` +
      `so writes to slots whose owner answers flow as before the move. Left: ${pieces.join('; ')}. The move stays open and cannot be resumed: run abort again once ${shards.length === 1 ? 'that shard answers' : 'those shards answer'}, to finish.`,
    {
      moveId,
      reason: 'abort-unfinished',
      shards,
      unreachable: Object.fromEntries(unreachable),
      left,
      ...(unsharded === undefined ? {} : { unsharded: unsharded.phase }),
    },
  );
}

/** The deadline option a {@link ShardSilentError} ran into, as the library and the CLI name it. */
export type DeadlineOption = 'statementTimeoutMillis' | 'copyIdleTimeoutMillis';

const DEADLINE_FLAGS: Record<DeadlineOption, string> = { statementTimeoutMillis: '--statement-timeout-ms', copyIdleTimeoutMillis: '--copy-idle-timeout-ms' };

/**
 * A shard stopped answering: a statement (or a COPY's stream) got no answer within a deadline of the
 * mover's (`statementTimeoutMillis`, or `copyIdleTimeoutMillis` of silence in a COPY), and a probe
 * found it silent too (neither the session's kept probe connection nor a new connection answered in
 * time, or the session's backend idle or gone: the path to it dropped), or the shard could not be
 * inspected (every probe refused, or the backend's state hidden) for `UNINSPECTED_DEADLINES` (5)
 * times the deadline with no progress. The session was dropped (its transaction ends with
 * it); the move stopped where it was: resume once the shard answers. `verify` reports it as a
 * refusal (`unreachable`). `context`: `shard`, `waitedFor`, `millis`, `option`, `flag`, `finding`.
 */
export class ShardSilentError extends MoveFailedError {
  readonly shard: string;
  readonly waitedFor: string;
  readonly millis: number;
  readonly option: DeadlineOption;
  /** The CLI flag of {@link option}. */
  readonly flag: string;
  /** What the probe found: `a new connection to it failed too (no answer to the login in 1000 ms): …`, … */
  readonly finding: string;

  constructor(shard: string, waitedFor: string, millis: number, option: DeadlineOption, finding: string, context: Record<string, unknown> = {}) {
    const flag = DEADLINE_FLAGS[option];
    super(
      `Shard "${shard}" did not answer ${waitedFor} within ${millis} ms (${option}, ${flag}), and ${finding}. The mover dropped its session and stopped. ` +
        `Resume once the shard answers (or abort). If it is only slow to answer, give it longer with ${flag}.`,
      { shard, waitedFor, millis, option, flag, finding, ...context },
    );
    this.shard = shard;
    this.waitedFor = waitedFor;
    this.millis = millis;
    this.option = option;
    this.flag = flag;
    this.finding = finding;
  }
}

/**
 * A statement of the mover's (or a COPY) waited on a shard for a lock longer than the mover waits
 * for one (`LOCK_WAIT_MILLIS`), found by its deadline's probe: the error names the table and the
 * backends keeping the lock (a migration, a long transaction) instead of calling the shard silent.
 * The session was dropped (its backend ended, so its queued lock request goes too); end those
 * transactions, then resume. `context`: `shard`, `waitedFor`, `table`, `waitedMillis`, `millis`,
 * `sqlState` (55P03), `pids`, `blockers`.
 */
export class ShardLockError extends MoveFailedError {
  readonly shard: string;
  readonly table: string;

  /** `lock`: how the message names the lock (`a lock on rows of orders`, `an advisory lock`); by default `a lock on <table>`. */
  constructor(shard: string, waitedFor: string, table: string, waitedMillis: number, millis: number, blockers: string, context: Record<string, unknown>, lock = `a lock on ${table}`) {
    super(
      `Shard "${shard}": ${waitedFor} waited ${(waitedMillis / 1000).toFixed(1)} s for ${lock}` +
        (blockers === '' ? ' (its holder ended before it could be named)' : `, kept by ${blockers}`) +
        `. The mover waits at most ${millis} ms for a lock: it dropped its session and stopped. End those transactions (or let them finish), then resume (or abort).`,
      { shard, waitedFor, table, waitedMillis: Math.round(waitedMillis), millis, sqlState: '55P03', ...context },
    );
    this.shard = shard;
    this.table = table;
  }
}

/**
 * A shard refused a statement of this command because a newer operator command acted on it since
 * (its mover epoch, the fencing token each lock-holding command gets from the catalog, is larger
 * than this command's: `mover-epoch.ts`). This command lost its operator lock and another
 * command (a `resume`, an `abort`) took the move over: nothing of this statement landed, and the
 * command stops. `context`: `reason` `superseded`, `shard`, `epoch` (this command's), `shardEpoch`
 * (the shard's), `sqlState` (KS004).
 */
export class MoverSupersededError extends MoveFailedError {
  readonly shard: string;

  /** `unchecked`: why the catalog's sequence could not be read to tell a sequence behind the shards ({@link EpochSequenceBehindError}) from a newer command (said in the message, and as `context.sequenceUnchecked`). */
  constructor(shard: string, epoch: bigint, shardEpoch: string | undefined, context: Record<string, unknown> = {}, cause?: unknown, unchecked?: { sequence: string; why: string }) {
    super(
      `Shard "${shard}" was taken over by a newer operator command (its mover epoch is ${shardEpoch ?? 'newer'}, this command's ${epoch}): this command lost its operator lock and another ` +
        'command (resume, abort) acts on the move now. Nothing more was changed there and this command stops. Run `status` to see where the move stands.' +
        (unchecked === undefined
          ? ''
          : ` Whether instead the catalog's epoch sequence ${unchecked.sequence} is behind the shards (a catalog restored from a backup) could not be checked: reading it failed (${unchecked.why}); ` +
            'grant the operator role SELECT on that sequence, or compare `select epoch from kysely_scale.mover_epoch` on the shard with it yourself.'),
      { reason: 'superseded', shard, epoch: String(epoch), ...(shardEpoch === undefined ? {} : { shardEpoch }), sqlState: 'KS004', ...(unchecked === undefined ? {} : { sequenceUnchecked: unchecked.why }), ...context },
      cause,
    );
    this.shard = shard;
  }
}

/**
 * A shard refused this command's epoch, but no newer command acted: the shard holds an epoch the
 * catalog's sequence `operator_epoch` has not reached, or this very epoch from another command (the
 * catalog was restored from a backup, or the sequence re-created, after the shards' epochs were
 * raised). Every command would be refused until the sequence is set past the shards' epochs: the
 * message gives the statement. `context`: `reason` `epoch-sequence-behind`, `shard`, `epoch` (this
 * command's), `shardEpoch`, `sequence`, `fix` (the statement, with this shard's epoch).
 */
export class EpochSequenceBehindError extends MoveFailedError {
  readonly shard: string;

  constructor(shard: string, epoch: bigint, shardEpoch: bigint, sequence: string, cause?: unknown) {
    const fix = `select setval('${sequence}', ${shardEpoch})`;
    super(
      `The catalog's epoch sequence ${sequence} is behind the shards: shard "${shard}" holds mover epoch ${shardEpoch}` +
        `${shardEpoch === epoch ? ' from another command' : ''}, and this command drew ${epoch} (was the catalog restored from a backup, or the sequence re-created?). ` +
        `No newer command acted, and this command changed nothing on that shard. Set the sequence to the largest epoch of any shard, on the catalog: \`${fix}\` ` +
        '(or larger: the largest `select epoch from kysely_scale.mover_epoch` over every shard), then run the command again.',
      { reason: 'epoch-sequence-behind', shard, epoch: String(epoch), shardEpoch: String(shardEpoch), sequence, fix, sqlState: 'KS004' },
      cause,
    );
    this.shard = shard;
  }
}

/** Whether `error` says a newer operator command took the shards over ({@link MoverSupersededError}). */
export function isSuperseded(error: unknown): boolean {
  return error instanceof MoveFailedError && error.context.reason === 'superseded';
}
