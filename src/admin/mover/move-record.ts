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

/** A shard's role in a batch. */
export type BatchSide = 'source' | 'target';

/**
 * An abort's unfinished work on a batch (`abort-left.ts`). On an `aborted` batch: its rollback, the
 * sides still to be undone. On a `published` one: its clean-up on the source (the abort finishes a
 * published batch), and the shards it waits for: the source (it runs there) and the target (the
 * rows' new owner: the source's copies are deleted only once it answers, as they may be the only
 * ones left if it is lost).
 */
export interface AbortLeft {
  /** The batch's shards, by role, that the abort waits for (the rest is done once they answer). */
  readonly sides: readonly BatchSide[];
  /** Rolled back from its cutover: each side's switch (hidden slots, required version, fence) is undone with it. */
  readonly switched?: true;
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
  /** Rows copied so far (saved every few seconds while a table copies, so `moves` shows it live). */
  rowsCopied?: number;
  /** Rows of the tables in {@link MoveBatch.copiedTables} (a resumed copy counts from here: the table it was copying starts over). Absent in records saved before it: `rowsCopied` then held only those. */
  rowsCopiedDone?: number;
  /** Rows expected (estimated when the move was planned, exact once counted). */
  rowsTotal?: number;
  /**
   * Set when a publish of {@link MoveBatch.version} was sent and its outcome is unknown (its
   * answer never came and the catalog could not be asked): it may still commit, so the cutover is
   * neither reverted nor finished until the version is settled (the catalog holds it or a newer one).
   */
  publishPending?: number;
  /** The shards' required versions before the cutover raised them (what an abort of the cutover restores). */
  prevRequired?: { source: number; target: number };
  /** Set by an abort that could not reach every shard the batch needs: what is left ({@link AbortLeft}). */
  abortLeft?: AbortLeft;
}

/**
 * Phases of a drain's unsharded step (the holder of the unsharded tables leaving), in order.
 * `guarded`: the source's unsharded tables carry the version policy and the write gate; `fenced`:
 * writes to them are refused on the source while they are copied (the fence lifts itself after
 * `fenceTimeoutMillis`); `copied`: the target holds the same rows (counts and checksums compared),
 * the fence still up; `published`: the source was switched (permanent fence, new version required)
 * and the topology recording the new holder published; `cleaned`: the source's copies are gone.
 */
export type UnshardedPhase = 'planned' | 'guarded' | 'fenced' | 'copied' | 'published' | 'cleaned' | 'aborted';

/** A drain's move of the unsharded tables off the shard that holds them, after its slot batches. */
export interface UnshardedStep {
  readonly source: string;
  readonly target: string;
  /** Schema-qualified names of the tables moved. */
  readonly tables: readonly string[];
  phase: UnshardedPhase;
  /** The topology version recording the new holder (fixed when the fence goes up). */
  version?: number;
  /** The source's required version before the switch raised it (what an abort restores). */
  prevRequired?: number;
  /**
   * Set (and saved) just before the publish of {@link UnshardedStep.version} is sent, kept when its
   * outcome is unknown: a publish of that version may still commit, so the step is neither rolled
   * back nor finished until the version is settled (the catalog holds it or a newer one). Dropped
   * when the publish commits or certainly did not.
   */
  publishPending?: number;
  rowsCopied?: number;
  /** Counted when the move was planned. */
  rowsTotal?: number;
  /** How long writes to the tables were fenced (raise to switch) in the attempt that switched. */
  fenceMillis?: number;
  /**
   * Set by an abort that left the step as it was because some of its shards did not answer: those
   * shards. `resume` refuses the move meanwhile, no abort lowers the step's shards' required
   * versions while it is set (the source may be switched to the step's version), and the next
   * abort settles the step once they answer.
   */
  abortLeft?: { readonly shards: readonly string[] };
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
  /** For a drain of the shard holding the unsharded tables: their move, run after the batches. */
  readonly unsharded?: UnshardedStep;
  /** The last error, when the move stopped on one. */
  error: string | null;
  readonly createdAt: Date;
  updatedAt: Date;
  /** How many times the record was saved (the store's guard against a late or concurrent save). */
  revision: number;
}
