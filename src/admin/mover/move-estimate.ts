/**
 * The `--dry-run` time estimate of a move: an estimate, from assumed rates, not a measurement.
 * Each batch copies its rows, scans the source's whole tables three times (the copy streams every
 * row and the mover keeps those of the moving slots; the snapshot verification and the clean-up's
 * key scan do it again) and the target's once (verification), then deletes its rows from the
 * source. The copy and the delete are throttled by `maxRowsPerSecond`; all of it is paced by the
 * nice ratio (busy at most 1/(1+niceRatio) of the time); and each batch has fixed costs (capture,
 * waiting for older transactions, catch-up, fenced cutover, replica wait, the clean-up delay).
 */
import type { MoveTuning } from './move-context';

/** Rates and costs the estimate assumes (conservative figures from `npm run bench -- resharding` and the mover tests, on a shared 2-core machine). */
export const ESTIMATE_ASSUMPTIONS = Object.freeze({
  /** Rows copied per second of busy time, without a throttle. */
  copyRowsPerSecond: 50_000,
  /** Rows deleted per second of busy time (keyed deletes in chunks), without a throttle. */
  deleteRowsPerSecond: 20_000,
  /** Rows streamed per second of busy time by a scan that keeps some of them (copy, verification, clean-up keys). */
  scanRowsPerSecond: 200_000,
  /** Fixed seconds per batch beyond the clean-up delay: capture, catch-up, cutover, publish, replica wait (about 1 s measured on small batches). */
  batchOverheadSeconds: 1,
  /** Fixed seconds of a drain's unsharded step (guard, fence, copy, switch, publish, clean-up), beyond its rows. */
  unshardedOverheadSeconds: 2,
});

/** One batch as the estimate sees it. */
export interface BatchToEstimate {
  /** Rows of the moving slots (the plan's estimate). */
  readonly rows: number;
  /** Rows of the source's sharded tables in all (its scans stream them all). */
  readonly sourceRows: number;
  /** Rows of the target's sharded tables in all. */
  readonly targetRows: number;
}

/** Estimated seconds for `batches` (and a drain's unsharded step of `unshardedRows`) under `tuning`. */
export function estimateMoveSeconds(batches: readonly BatchToEstimate[], tuning: Pick<MoveTuning, 'maxRowsPerSecond' | 'niceRatio' | 'cleanupDelayMillis'>, unshardedRows?: number): number {
  const a = ESTIMATE_ASSUMPTIONS;
  const paced = 1 + tuning.niceRatio;
  const max = tuning.maxRowsPerSecond;
  // Throttled work takes the longer of the throttle's time and its paced busy time.
  const throttled = (rows: number, rate: number): number => Math.max(max === undefined ? 0 : rows / max, (rows / rate) * paced);
  let seconds = 0;
  for (const b of batches) {
    seconds += throttled(b.rows, a.copyRowsPerSecond) + throttled(b.rows, a.deleteRowsPerSecond);
    seconds += ((3 * b.sourceRows + b.targetRows) / a.scanRowsPerSecond) * paced;
    seconds += a.batchOverheadSeconds + tuning.cleanupDelayMillis / 1000;
  }
  // The unsharded step's copy is not throttled (writers wait on its fence).
  if (unshardedRows !== undefined) seconds += a.unshardedOverheadSeconds + (2 * unshardedRows) / a.copyRowsPerSecond;
  return Math.ceil(seconds);
}
