/**
 * The slot mover: online add, drain, move and rebalance of shards, with change capture, a fenced
 * cutover that PostgreSQL enforces against stale routers, verification, resume and abort.
 */
export { addShard, drainShard, moveSlots, rebalanceShards, type NewShard } from './mover-operations';
export { resumeMove, abortMove, moveHistory } from './move-control';
export { verifyShards, type VerifyResult, type MisplacedRows } from './shard-verify';
export type { MoverOptions } from './mover-session';
export type { MoveResult, MovePlanSummary, PlannedBatch, MoveSummary, ResultError } from './move-result';
export { MOVE_TUNING_DEFAULTS, type MoveProgress, type MoveTuning, type PhaseHook, type HookPoint } from './move-context';
export type { BatchPhase, MoveKind, MoveStatus } from './move-record';
export { MoveRefusedError, MoveFailedError, ShardSilentError, ShardLockError, MoverSupersededError, EpochSequenceBehindError, isSuperseded, type MoveRefusal, type DeadlineOption } from './mover-errors';
export { SUPERSEDED_SQLSTATE } from './mover-epoch';
export { parseSlotRanges, formatSlotRanges } from './slot-ranges';
export { retryOnFence, type FenceRetryOptions } from './fence-retry';
