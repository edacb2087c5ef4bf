/**
 * Failover classes: what a failed replica read means for the replica and for the read. Only a
 * replica that cannot be reached (or does not answer by the read's deadline) is at fault and leaves
 * rotation; a full pool or a standby's refusal says nothing about its health; a statement's own
 * error is the caller's and is thrown unchanged.
 */
import { isConnectionFailure, isPoolTimeout, isReadOnlyRefusal, isRecoveryConflict } from '../cluster/connection-failure';

/**
 * How a replica read ended:
 * - `ok`: rows;
 * - `statement`: the statement's own error (thrown to the caller; the replica answered);
 * - `conflict`: the standby cancelled it for a replay conflict (40001, 40P01) or refused it as a write (25006): run it on the primary, the replica stays;
 * - `busy`: the replica's pool had no free connection in time: run it elsewhere, the replica stays;
 * - `unreachable`: the replica could not be reached or dropped the connection: run it elsewhere, the replica is ejected;
 * - `deadline`: no answer within `readTimeoutMillis`: run it elsewhere, the replica is ejected.
 */
export type ReadOutcome = 'ok' | 'statement' | 'conflict' | 'busy' | 'unreachable' | 'deadline';

/** The class of a replica read's error. */
export function classifyReadFailure(error: unknown): Exclude<ReadOutcome, 'ok' | 'deadline'> {
  // A checkout timeout is also a "connection failure" by its message: tell it apart first.
  if (isPoolTimeout(error)) return 'busy';
  if (isConnectionFailure(error)) return 'unreachable';
  if (isRecoveryConflict(error) || isReadOnlyRefusal(error)) return 'conflict';
  return 'statement';
}

/** Whether the replica answered (a server that answers is alive, whatever it answered). */
export function answered(outcome: ReadOutcome): boolean {
  return outcome === 'ok' || outcome === 'statement' || outcome === 'conflict';
}

/** Whether the replica is at fault: it leaves rotation at once. */
export function ejects(outcome: ReadOutcome): boolean {
  return outcome === 'unreachable' || outcome === 'deadline';
}
