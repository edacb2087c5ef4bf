/** The result objects of mover operations: what was planned, what happened, and the error if any. */
import type { MoveKind, MoveRecord, MoveStatus, UnshardedPhase } from './move-record';
import type { UnshardedPlan } from './unsharded-plan';
import { formatSlotRanges } from './slot-ranges';
import { shardsLeft } from './abort-left';
import type { AbortLeftover } from './mover-errors';

/** An error as a result carries it. */
export interface ResultError {
  readonly code: string;
  readonly message: string;
  readonly context: Readonly<Record<string, unknown>>;
}

/** One batch of a plan. */
export interface PlannedBatch {
  readonly source: string;
  readonly target: string;
  /** Slot ranges (`0-1023`). */
  readonly slots: string;
  readonly slotCount: number;
  /** An estimate: the source's rows (as PostgreSQL's planner estimates them, see `table-estimate.ts`) times the batch's share of its slots. */
  readonly estimatedRows: number;
}

/** A plan: batches, slots, rows and the estimated time. */
export interface MovePlanSummary {
  readonly batches: readonly PlannedBatch[];
  readonly slots: number;
  readonly estimatedRows: number;
  /** An estimate, not a measurement: copy and clean-up (throttled), the scans, the pacing and each batch's fixed costs (see `move-estimate.ts`). */
  readonly estimatedSeconds: number;
  /** For a drain: the shard removed at the end. */
  readonly removeShard?: string;
  /** For a drain of the shard holding the unsharded tables: where they go, each with its rows (counted), moved after the batches. */
  readonly unsharded?: UnshardedPlan;
  /** A dry run of an add with migrations: the new shard they would run on first (not run, and its schema not compared, by the dry run). */
  readonly migrationsPending?: string;
}

/** How a drain's unsharded step went (in results and in `status`). */
export interface UnshardedSummary {
  readonly source: string;
  readonly target: string;
  readonly tables: readonly string[];
  readonly phase: UnshardedPhase;
  /** The version that records (once `holderMoved`), or would have recorded, the new holder; fixed when the fence goes up. */
  readonly version: number | null;
  readonly rowsCopied: number;
  /** How long writes to the tables were refused (fence raised to source switched), when this run switched it. */
  readonly fenceMillis: number | null;
  /** Whether the new holder was published (phase `published` or `cleaned`): the tables moved, and an abort finished the step instead of rolling it back. */
  readonly holderMoved: boolean;
  /** The shards an abort that left the step as it was waits for (absent when none): the next abort settles it once they answer. */
  readonly left?: readonly string[];
}

/** A stored move's unsharded step, summarised (undefined when it has none). */
export function summarizeUnsharded(move: MoveRecord): UnshardedSummary | undefined {
  const u = move.unsharded;
  if (u === undefined) return undefined;
  return Object.freeze({ source: u.source, target: u.target, tables: u.tables, phase: u.phase, version: u.version ?? null, rowsCopied: u.rowsCopied ?? 0, fenceMillis: u.fenceMillis ?? null, holderMoved: u.phase === 'published' || u.phase === 'cleaned', ...(u.abortLeft === undefined ? {} : { left: [...u.abortLeft.shards] }) });
}

/** One line of text for a drain's unsharded step (`moves` and `status`): tables, shards, phase, version, rows, write pause. */
export function unshardedLine(u: UnshardedSummary): string {
  // The version is fixed when the fence goes up; it is only a version of the catalog once the holder moved.
  const version = u.version === null || !u.holderMoved ? '' : `  v${u.version}`;
  const fence = u.fenceMillis === null ? '' : `  writes fenced ${u.fenceMillis} ms`;
  return `unsharded tables (${u.tables.length}) ${u.source} → ${u.target}  ${u.phase}${version}  ${u.rowsCopied} row${u.rowsCopied === 1 ? '' : 's'}${fence}`;
}

/** What add, drain, move, rebalance, resume and abort return. */
export interface MoveResult {
  readonly ok: boolean;
  readonly operation: MoveKind | 'resume' | 'abort';
  readonly dryRun: boolean;
  readonly moveId: number | null;
  /** `planned` for a dry run; `refused` when nothing was changed. */
  readonly status: MoveStatus | 'planned' | 'refused';
  readonly plan: MovePlanSummary | null;
  /** Topology versions published by this run. */
  readonly versions: readonly number[];
  /** For resume and abort: versions the move's earlier, interrupted run(s) had published (not counted in `versions`). */
  readonly earlierVersions?: readonly number[];
  /** Rows this run copied (a table copied again, by a retry or a resume, counts again); a resume does not count what the earlier runs copied. */
  readonly rowsCopied: number;
  /** Rows the move's targets hold from it, over all its runs (what `moves` shows): for resume and abort, the earlier runs' copies included. */
  readonly moveRowsCopied: number;
  readonly durationMillis: number;
  /** For abort: batches rolled back, and batches that were already published and were finished instead. */
  readonly rolledBack?: number;
  readonly completed?: number;
  /**
   * For an abort that could not reach every shard of the move (`error.context.reason`
   * `abort-unfinished`): what each shard that did not answer still holds. The move stays open;
   * run abort again once they answer.
   */
  readonly abortLeft?: readonly AbortLeftover[];
  /** A drain's unsharded step, when the move has one. */
  readonly unsharded?: UnshardedSummary;
  /** Set when there was nothing to move and that counts as done (rebalance of a balanced cluster): why. `ok` is true, no batch, no move stored. */
  readonly nothingToMove?: string;
  readonly error: ResultError | null;
}

/** A stored move as `status` lists it. */
export interface MoveSummary {
  readonly id: number;
  readonly kind: MoveKind;
  readonly status: MoveStatus;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** `left`: the shards that still hold state of the batch after an abort that could not reach them (absent when none). */
  readonly batches: readonly { readonly source: string; readonly target: string; readonly slots: string; readonly phase: string; readonly version: number | null; readonly rowsCopied: number; readonly left?: readonly string[] }[];
  readonly unsharded?: UnshardedSummary;
  readonly error: string | null;
}

/** A stored move, summarised. */
export function summarizeMove(move: MoveRecord): MoveSummary {
  return Object.freeze({
    id: move.id,
    kind: move.kind,
    status: move.status,
    createdAt: move.createdAt,
    updatedAt: move.updatedAt,
    batches: move.batches.map((b) => {
      const left = shardsLeft(b);
      return Object.freeze({ source: b.source, target: b.target, slots: formatSlotRanges(b.slots), phase: b.phase, version: b.version ?? null, rowsCopied: b.rowsCopied ?? 0, ...(left.length === 0 ? {} : { left }) });
    }),
    ...(move.unsharded === undefined ? {} : { unsharded: summarizeUnsharded(move) }),
    error: move.error,
  });
}

/** Rows copied by a move's batches and its unsharded step. */
export function rowsOf(move: MoveRecord): number {
  return move.batches.reduce((n, b) => n + (b.rowsCopied ?? 0), move.unsharded?.rowsCopied ?? 0);
}

/** Versions a move's batches and unsharded step published. */
export function versionsOf(move: MoveRecord): number[] {
  const u = move.unsharded;
  const unsharded = u?.version !== undefined && (u.phase === 'published' || u.phase === 'cleaned') ? [u.version] : [];
  return [...move.batches.filter((b) => b.version !== undefined && (b.phase === 'published' || b.phase === 'cleaned')).map((b) => b.version!), ...unsharded];
}

/** The `unsharded` field of a result. */
export function unshardedOf(move: MoveRecord): { unsharded?: UnshardedSummary } {
  const summary = summarizeUnsharded(move);
  return summary === undefined ? {} : { unsharded: summary };
}
