/**
 * Lag bounds that hold between checks. A replica's replay position only moves forward, so at any
 * time t after its check it holds at least what it had replayed then (`replayedTo`). Then:
 *
 * - bytes: the primary is at most at `latest.lsn + RATE_MARGIN × peakRate × (t − latest.at)` (its
 *   last position plus what it can have written since at 1.5 × its highest rate of the last 10 s;
 *   nothing while it is down), so the replica is at most that minus `replayedTo` behind;
 * - time: it holds everything the primary had at T, the newest time the primary was seen at a
 *   position ≤ `replayedTo`, so its data is at most t − T old. Unknown (no such observation) counts as too old.
 *
 * These are pure functions of the measurements and the time; choice calls them at every read.
 */
import type { Observation } from './primary-watch';

/** Margin over the highest recent WAL rate, for bursts between two primary checks. */
export const RATE_MARGIN = 1.5;

/** The measurements a bound needs. */
export interface PrimaryHistory {
  readonly latest: Observation | undefined;
  newestAtOrBelow(lsn: bigint): Observation | undefined;
  peakRate(now: number): number;
}

/** Upper bound of how many WAL bytes a replica that replayed `replayedTo` is behind at `now` (`undefined` before the primary was seen). */
export function lagBytesBound(replayedTo: bigint, primary: PrimaryHistory, primaryUp: boolean, now: number): number | undefined {
  const latest = primary.latest;
  if (latest === undefined) return undefined;
  const since = primaryUp ? Math.max(0, now - latest.at) : 0;
  const behind = Number(latest.lsn - replayedTo);
  return Math.max(0, behind) + Math.ceil(RATE_MARGIN * primary.peakRate(now) * since);
}

/** Upper bound of how old (ms) the data of a replica that replayed `replayedTo` is at `now`; `undefined` when nothing proves a bound. */
export function stalenessBoundMillis(replayedTo: bigint, primary: PrimaryHistory, now: number): number | undefined {
  const seen = primary.newestAtOrBelow(replayedTo);
  return seen === undefined ? undefined : Math.max(0, now - seen.at);
}

/** Why a replica that replayed `replayedTo` is beyond the bounds at `now`, or `null` when it is within them. */
export function lagProblem(
  replayedTo: bigint,
  primary: PrimaryHistory,
  primaryUp: boolean,
  now: number,
  bounds: { readonly maxLagBytes: number; readonly maxLagMillis: number },
): string | null {
  const bytes = lagBytesBound(replayedTo, primary, primaryUp, now);
  if (bytes === undefined) return 'its primary has not been seen yet, so its lag is unknown';
  if (bytes > bounds.maxLagBytes) return `it may be ${bytes} bytes of WAL behind its primary (maxLagBytes ${bounds.maxLagBytes})`;
  const millis = stalenessBoundMillis(replayedTo, primary, now);
  if (millis === undefined) return 'it is behind every position its primary was seen at, so its staleness is unknown';
  if (millis > bounds.maxLagMillis) return `its data may be ${Math.round(millis)} ms old (maxLagMillis ${bounds.maxLagMillis})`;
  return null;
}
