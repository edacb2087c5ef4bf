/**
 * Progress of a move for the CLI: a bar on a terminal (cli-progress: phase, rows copied / total,
 * rate, ETA), one JSON line per second otherwise (logs, CI, another program reading it), each
 * with `type: 'progress'` (the CLI writes the plan before them as a line of `type: 'plan'`).
 *
 * A batch's `rowsTotal` is the plan's estimate (the source's rows measured when planned, see
 * `table-estimate.ts`, times the batch's share of the source's slots), not a count: rows written
 * during the move, or slots holding more or fewer rows than the source's average, make the copy
 * find more or fewer. So the printers show it as such: the JSON lines carry the estimate as
 * `rowsEstimated`, and as `rowsTotal` the best known total: the estimate, or the rows copied so far
 * when the copy has passed it, and the rows copied once the copy is done. The ETA is unknown
 * (null) while the copy runs past its estimate. During the clean-up (phase `published`, with
 * `rowsCleaned`) the ETA is the rows left to delete at the clean-up's rate so far.
 *
 * The batch's stored phase `capturing` is the phase in which the rows are copied (the capture runs
 * beside the copy): the JSON keeps it (programs read it), the bar says `copying`.
 */
import { SingleBar } from 'cli-progress';
import type { Clock } from '../../kernel/clock';
import { systemClock } from '../../kernel/clock';
import type { MoveProgress } from './move-context';

/** The batch's rows are all copied from this phase on. */
const COPY_DONE: ReadonlySet<MoveProgress['phase']> = new Set(['copied', 'caught-up', 'cutover', 'published', 'cleaned', 'done']);

/** The best known total of a batch's rows (see the file's comment). */
function knownTotal(p: MoveProgress): number {
  return COPY_DONE.has(p.phase) ? p.rowsCopied : Math.max(p.rowsTotal, p.rowsCopied);
}

/** Receives progress reports; `stop()` ends the bar or prints the last line. */
export interface ProgressPrinter {
  readonly onProgress: (progress: MoveProgress) => void;
  stop(): void;
}

/** A printer for `stream`: a bar when it is a terminal, JSON lines (at most one per `intervalMillis`) otherwise. */
export function progressPrinter(stream: NodeJS.WritableStream & { isTTY?: boolean }, clock: Clock = systemClock, intervalMillis = 1000): ProgressPrinter {
  return stream.isTTY === true ? barPrinter(stream) : jsonLinePrinter(stream, clock, intervalMillis);
}

function barPrinter(stream: NodeJS.WritableStream): ProgressPrinter {
  const bar = new SingleBar({
    stream,
    format: 'batch {batch}/{batches} {source}→{target} {phase} [{bar}] {value}/{approx}{total} rows | {rate} rows/s | ETA {etaText}',
    hideCursor: true,
    etaBuffer: 50,
  });
  let started = false;
  const startedAt = Date.now();
  return {
    onProgress(p) {
      const payload = {
        batch: p.batch,
        batches: p.batches,
        source: p.source,
        target: p.target,
        phase: p.phase === 'capturing' ? 'copying' : p.phase === 'published' && p.rowsCleaned !== undefined ? 'cleaning' : p.phase,
        approx: COPY_DONE.has(p.phase) ? '' : '~', // the total is an estimate until the copy is done
        rate: Math.round(p.rowsCopied / Math.max(0.001, (Date.now() - startedAt) / 1000)),
        etaText: '',
      };
      const total = Math.max(knownTotal(p), 1);
      // Our own: the bar's rendered an unknown ETA (no rate yet, a new batch) as "NFs".
      const left = total - p.rowsCopied;
      payload.etaText = payload.rate > 0 && left > 0 && !COPY_DONE.has(p.phase) ? formatSeconds(Math.ceil(left / payload.rate)) : '–';
      if (!started) {
        bar.start(total, p.rowsCopied, payload);
        started = true;
      }
      bar.setTotal(total);
      bar.update(p.rowsCopied, payload);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

/** `42s`, `3m05s`, `1h02m`. */
export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

function jsonLinePrinter(stream: NodeJS.WritableStream, clock: Clock, intervalMillis: number): ProgressPrinter {
  let last: MoveProgress | undefined;
  let lastPrinted: MoveProgress | undefined;
  let lastAt = -Infinity;
  let cancelTick: (() => void) | undefined;
  let stopped = false;
  // When the current batch's clean-up started (its first report with rowsCleaned), for its rate.
  let cleaning: { batch: number; at: number } | undefined;
  const startedAt = clock.monotonicNow();
  const print = (p: MoveProgress): void => {
    const now = clock.monotonicNow();
    const elapsed = (now - startedAt) / 1000;
    const rate = elapsed > 0 ? Math.round(p.rowsCopied / elapsed) : 0;
    const total = knownTotal(p);
    const pastEstimate = !COPY_DONE.has(p.phase) && p.rowsCopied > p.rowsTotal;
    let eta = pastEstimate || rate <= 0 ? null : Math.ceil(Math.max(0, total - p.rowsCopied) / rate);
    if (p.phase === 'published' && p.rowsCleaned !== undefined && cleaning?.batch === p.batch) {
      const cleanRate = p.rowsCleaned / Math.max(0.001, (now - cleaning.at) / 1000);
      eta = p.rowsCleaned > 0 ? Math.ceil(Math.max(0, p.rowsCopied - p.rowsCleaned) / cleanRate) : null;
    }
    stream.write(`${JSON.stringify({ type: 'progress', ...p, rowsTotal: total, rowsEstimated: p.rowsTotal, rowsPerSecond: rate, etaSeconds: eta, elapsedSeconds: Math.round(elapsed) })}\n`);
    lastPrinted = p;
    lastAt = now;
  };
  // Once per interval the latest known state is printed, whether or not the mover reported since
  // (a long scan, the clean-up, a wait), so a reader sees one line per second.
  const tick = (): void => {
    if (stopped) return;
    // Half an interval: a line a report printed just before this tick does not leave a gap of almost two.
    if (last !== undefined && clock.monotonicNow() - lastAt >= intervalMillis / 2) print(last);
    cancelTick = clock.setTimeout(tick, intervalMillis);
  };
  return {
    onProgress(p) {
      last = p;
      // The clean-up's rate counts from its first report, not from the first line printed of it.
      if (p.phase === 'published' && p.rowsCleaned !== undefined && cleaning?.batch !== p.batch) cleaning = { batch: p.batch, at: clock.monotonicNow() };
      if (cancelTick === undefined && !stopped) cancelTick = clock.setTimeout(tick, intervalMillis);
      // A phase change is printed at once; rows at most once per interval.
      if (clock.monotonicNow() - lastAt >= intervalMillis || p.phase !== lastPrinted?.phase || p.batch !== lastPrinted?.batch) print(p);
    },
    stop() {
      stopped = true;
      cancelTick?.();
      // The last report, unless the last printed line already said the same.
      if (last !== undefined && (last.phase !== lastPrinted?.phase || last.batch !== lastPrinted.batch || last.rowsCopied !== lastPrinted.rowsCopied || last.rowsCleaned !== lastPrinted.rowsCleaned)) print(last);
    },
  };
}
