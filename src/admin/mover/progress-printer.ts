/**
 * Progress of a move for the CLI: a bar on a terminal (cli-progress: phase, rows copied / total,
 * rate, ETA), one JSON line per second otherwise (logs, CI, another program reading it).
 */
import { SingleBar } from 'cli-progress';
import type { Clock } from '../../kernel/clock';
import { systemClock } from '../../kernel/clock';
import type { MoveProgress } from './move-context';

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
    format: 'batch {batch}/{batches} {source}→{target} {phase} [{bar}] {value}/{total} rows | {rate} rows/s | ETA {eta_formatted}',
    hideCursor: true,
    etaBuffer: 50,
  });
  let started = false;
  const startedAt = Date.now();
  return {
    onProgress(p) {
      const payload = { batch: p.batch, batches: p.batches, source: p.source, target: p.target, phase: p.phase, rate: Math.round(p.rowsCopied / Math.max(0.001, (Date.now() - startedAt) / 1000)) };
      if (!started) {
        bar.start(Math.max(p.rowsTotal, p.rowsCopied, 1), p.rowsCopied, payload);
        started = true;
      }
      bar.setTotal(Math.max(p.rowsTotal, p.rowsCopied, 1));
      bar.update(p.rowsCopied, payload);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

function jsonLinePrinter(stream: NodeJS.WritableStream, clock: Clock, intervalMillis: number): ProgressPrinter {
  let last: MoveProgress | undefined;
  let lastPrinted: MoveProgress | undefined;
  let lastAt = -Infinity;
  const startedAt = clock.monotonicNow();
  const print = (p: MoveProgress): void => {
    const elapsed = (clock.monotonicNow() - startedAt) / 1000;
    const rate = elapsed > 0 ? Math.round(p.rowsCopied / elapsed) : 0;
    const remaining = Math.max(0, p.rowsTotal - p.rowsCopied);
    stream.write(`${JSON.stringify({ ...p, rowsPerSecond: rate, etaSeconds: rate > 0 ? Math.ceil(remaining / rate) : null })}\n`);
    lastPrinted = p;
  };
  return {
    onProgress(p) {
      last = p;
      const now = clock.monotonicNow();
      // A phase change is printed at once; rows at most once per interval.
      if (now - lastAt >= intervalMillis || p.phase !== lastPrinted?.phase || p.batch !== lastPrinted?.batch) {
        lastAt = now;
        print(p);
      }
    },
    stop() {
      // The last report, unless the last printed line already said the same.
      if (last !== undefined && (last.phase !== lastPrinted?.phase || last.batch !== lastPrinted.batch || last.rowsCopied !== lastPrinted.rowsCopied)) print(last);
    },
  };
}
