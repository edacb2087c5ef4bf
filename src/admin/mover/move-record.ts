/**
 * A slot move as the catalog keeps it: what was asked, the batches it was planned into and how far
 * each got. Every phase change is saved before the next phase starts, so a mover that died can be
 * resumed or aborted from the record alone.
 */
import type { ShardedTableSpec } from './shard-guard-sql';

/**
 * Phases of one batch, in order. `capturing`: the source logs changes of the moving slots and the
 * target hides them; `copied`: every table's rows were copied; `caught-up`: the change log was
 * applied and a snapshot verification passed; `cutover`: the fence is up and the shards are being
 * switched (the new version may or may not be published yet: the catalog tells); `published`: the
 * new owner serves the slots; `cleaned`: the source rows are gone. `aborted`: rolled back.
 */
export type BatchPhase = 'planned' | 'capturing' | 'copied' | 'caught-up' | 'cutover' | 'published' | 'cleaned' | 'aborted';

/** The phases in order (for comparisons). */
export const BATCH_PHASES: readonly BatchPhase[] = Object.freeze(['planned', 'capturing', 'copied', 'caught-up', 'cutover', 'published', 'cleaned']);

/** Whether `phase` is at or past `other`. */
export function phaseReached(phase: BatchPhase, other: BatchPhase): boolean {
  return BATCH_PHASES.indexOf(phase) >= BATCH_PHASES.indexOf(other);
}

/** One batch: slots moving from one source shard to one target shard, published as one topology version. */
export interface MoveBatch {
  readonly index: number;
  readonly source: string;
  readonly target: string;
  readonly slots: readonly number[];
  phase: BatchPhase;
  /** The topology version this batch publishes (fixed when its cutover starts). */
  version?: number;
  /** Tables whose copy finished (a resumed copy skips them). */
  copiedTables?: string[];
  /** Rows copied so far. */
  rowsCopied?: number;
  /** Rows expected (estimated when the move was planned, exact once counted). */
  rowsTotal?: number;
  /** The shards' required versions before the cutover raised them (what an abort of the cutover restores). */
  prevRequired?: { source: number; target: number };
}

/** What kind of operation created a move. */
export type MoveKind = 'add' | 'drain' | 'move' | 'rebalance';

/** `open`: not finished (running, or interrupted: resume or abort it); `done`; `aborted`. */
export type MoveStatus = 'open' | 'done' | 'aborted';

/** A move as stored in the catalog. */
export interface MoveRecord {
  readonly id: number;
  readonly kind: MoveKind;
  status: MoveStatus;
  readonly tables: readonly ShardedTableSpec[];
  readonly batches: MoveBatch[];
  /** For `drain`: the shard removed from the topology once its batches are done. */
  readonly removeShard?: string;
  /** The last error, when the move stopped on one. */
  error: string | null;
  readonly createdAt: Date;
  updatedAt: Date;
}
