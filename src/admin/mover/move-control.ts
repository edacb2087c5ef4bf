/** Resuming and aborting an interrupted move, and the history of moves. */
import { systemClock } from '../../kernel/clock';
import { abortUnfinished, MoveRefusedError } from './mover-errors';
import { toResultError, withMover, type MoverOptions } from './mover-session';
import { summarizeMove, type MoveResult, type MoveSummary } from './move-result';
import { runMove } from './move-runner';
import { abortMoveBatches } from './move-abort';
import { rowsOf, unshardedOf, versionsOf } from './move-result';
import type { TopologyCatalog } from '../topology-catalog';
import type { MoveContext } from './move-context';
import type { MoveRecord } from './move-record';

function baseResult(operation: 'resume' | 'abort', started: number, now: number): MoveResult {
  return { ok: false, operation, dryRun: false, moveId: null, status: 'refused', plan: null, versions: [], rowsCopied: 0, moveRowsCopied: 0, durationMillis: now - started, error: null };
}

/** The catalog's latest version (0 when it holds none). */
async function latestVersion(catalog: TopologyCatalog): Promise<number> {
  return (await catalog.latest())?.version ?? 0;
}

/** This run's rows copied, and the move's over all its runs. */
function rowsCopied(ctx: MoveContext, move: MoveRecord): Pick<MoveResult, 'rowsCopied' | 'moveRowsCopied'> {
  return { rowsCopied: ctx.rowsCopied, moveRowsCopied: rowsOf(move) };
}

/**
 * Versions published by this run (under the operator lock nobody else publishes: every version
 * after `before`), and those the move's earlier, interrupted run(s) had published, so a summary
 * does not credit this run with them.
 */
async function publishedBy(catalog: TopologyCatalog, before: number, earlier: readonly number[]): Promise<{ versions: number[]; earlierVersions: number[] }> {
  const after = await latestVersion(catalog).catch(() => before);
  const versions: number[] = [];
  for (let v = before + 1; v <= after; v++) versions.push(v);
  return { versions, earlierVersions: [...earlier].sort((a, b) => a - b) };
}

/** Finishes the open move from where it stopped (any phase). */
export async function resumeMove(options: MoverOptions): Promise<MoveResult> {
  const clock = options.clock ?? systemClock;
  const started = clock.monotonicNow();
  try {
    return await withMover(options, async (frame) => {
      await frame.registerGivenTables(); // for later commands: a resume moves the tables its move recorded
      const move = await frame.store.open();
      if (move === undefined) throw new MoveRefusedError('not-found', 'No move is open: nothing to resume.');
      await frame.store.claim(move);
      const before = await latestVersion(frame.catalog);
      const earlier = versionsOf(move);
      const ctx = frame.context(move);
      try {
        ctx.checkLock(); // the claim can succeed on a failed-over catalog whose lock session already ended
        await runMove(ctx);
        return Object.freeze({ ...baseResult('resume', started, clock.monotonicNow()), ok: true, moveId: move.id, status: move.status, ...(await publishedBy(frame.catalog, before, earlier)), ...rowsCopied(ctx, move), ...unshardedOf(move) });
      } catch (error) {
        move.error = toResultError(error).message;
        await frame.store.save(move).catch(() => undefined);
        return Object.freeze({ ...baseResult('resume', started, clock.monotonicNow()), moveId: move.id, status: 'open' as const, error: toResultError(error), ...(await publishedBy(frame.catalog, before, earlier)), ...rowsCopied(ctx, move), ...unshardedOf(move) });
      } finally {
        await ctx.close();
      }
    });
  } catch (error) {
    return Object.freeze({ ...baseResult('resume', started, clock.monotonicNow()), error: toResultError(error) });
  }
}

/**
 * Rolls the open move back: every batch not yet published is undone (fence and capture lifted,
 * target copies deleted); a batch already published cannot be undone (the new owner took writes)
 * and is finished instead. Lifts any fence the move left. Shards that do not answer are left out:
 * everything is done on the others, the move stays open, and the result (`ok: false`, `error`
 * `E_MOVE_FAILED` with `context.reason` `abort-unfinished`, and `abortLeft`) says what each of
 * them still holds; `abort` again finishes it once they answer (`resume` refuses the move). A
 * published batch is not cleaned up while its target is silent (the source's rows may be the only
 * copy), and a drain's unsharded step with a silent shard is left as it is, recorded on the move,
 * its shards keeping their required versions.
 */
export async function abortMove(options: MoverOptions): Promise<MoveResult> {
  const clock = options.clock ?? systemClock;
  const started = clock.monotonicNow();
  try {
    return await withMover(options, async (frame) => {
      const move = await frame.store.open();
      if (move === undefined) throw new MoveRefusedError('not-found', 'No move is open: nothing to abort.');
      await frame.store.claim(move);
      const before = await latestVersion(frame.catalog);
      const earlier = versionsOf(move);
      const ctx = frame.context(move);
      const result = async (fields: Partial<MoveResult>): Promise<MoveResult> =>
        Object.freeze({ ...baseResult('abort', started, clock.monotonicNow()), moveId: move.id, ...(await publishedBy(frame.catalog, before, earlier)), ...rowsCopied(ctx, move), ...unshardedOf(move), ...fields });
      try {
        ctx.checkLock(); // the claim can succeed on a failed-over catalog whose lock session already ended
        const { rolledBack, completed, left, unreachable, unsharded } = await abortMoveBatches(ctx);
        if (left.length === 0 && unsharded === undefined) return await result({ ok: true, status: move.status, rolledBack, completed });
        const error = toResultError(abortUnfinished(move.id, left, unreachable, unsharded));
        move.error = error.message;
        await frame.store.save(move).catch(() => undefined);
        return await result({ status: 'open', rolledBack, completed, abortLeft: left, error });
      } catch (error) {
        move.error = toResultError(error).message;
        await frame.store.save(move).catch(() => undefined);
        // Versions it published before failing (a batch already published is finished, not undone) are still its own.
        return await result({ status: 'open', error: toResultError(error) });
      } finally {
        await ctx.close();
      }
    });
  } catch (error) {
    return Object.freeze({ ...baseResult('abort', started, clock.monotonicNow()), error: toResultError(error) });
  }
}

/** Moves in progress and past ones, newest first. */
export async function moveHistory(options: Pick<MoverOptions, 'catalog' | 'schema'> & { readonly limit?: number }): Promise<{ readonly ok: boolean; readonly moves: readonly MoveSummary[]; readonly error: ReturnType<typeof toResultError> | null }> {
  try {
    return await withMover(options, async (frame) => ({ ok: true, moves: (await frame.store.list(options.limit ?? 10)).map(summarizeMove), error: null }), false);
  } catch (error) {
    return { ok: false, moves: [], error: toResultError(error) };
  }
}
