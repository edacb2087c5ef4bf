/**
 * The mover's duty cycle (gh-ost's nice ratio): after each slice of streaming work it holds the
 * stream back for `niceRatio` times as long as the slice took, so the shard's backend that
 * produces the stream (and the one consuming it) wait on full socket buffers instead of taking
 * CPU from the app's statements. At ratio 1 a scan or copy runs at most half of the time.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { Clock } from '../../kernel/clock';

/** How a stream of the mover is paced. */
export interface ScanPace {
  readonly clock: Clock;
  /** Pause after each slice, as a multiple of the slice's time (0: no pause). */
  readonly niceRatio: number;
  /** Length of a slice of work between pauses, in milliseconds. */
  readonly sliceMillis: number;
}

/** Length of a slice of work between pauses: short, so no app statement waits long behind one. */
export const PACE_SLICE_MILLIS = 10;

/** A pass-through stream that runs in slices of `sliceMillis` and pauses `niceRatio` times each slice after it. */
export class ScanPacer extends Transform {
  readonly #pace: ScanPace;
  #sliceStart: number | undefined;

  constructor(pace: ScanPace) {
    super();
    this.#pace = pace;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const now = this.#pace.clock.monotonicNow();
    this.#sliceStart ??= now;
    this.push(chunk);
    const delay = paceDelayMillis(now - this.#sliceStart, this.#pace);
    if (delay <= 0) {
      callback();
      return;
    }
    this.#pace.clock.setTimeout(() => {
      this.#sliceStart = undefined; // the next slice starts with the next chunk
      callback();
    }, delay);
  }
}

/** The pause owed after `busyMillis` of work: none until a slice is full, then `niceRatio` times the slice. */
export function paceDelayMillis(busyMillis: number, pace: Pick<ScanPace, 'niceRatio' | 'sliceMillis'>): number {
  if (pace.niceRatio <= 0 || busyMillis < pace.sliceMillis) return 0;
  return busyMillis * pace.niceRatio;
}

/** Waits what a finished statement of `busyMillis` owes (statements that are not streams: deletes, catch-up passes). */
export function pauseAfter(busyMillis: number, pace: ScanPace): Promise<void> {
  const delay = pace.niceRatio > 0 ? busyMillis * pace.niceRatio : 0;
  return delay <= 0 ? Promise.resolve() : new Promise((resolve) => pace.clock.setTimeout(resolve, delay));
}
