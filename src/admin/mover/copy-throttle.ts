/**
 * A pass-through stream over COPY text rows that counts them (one newline ends each row: COPY's
 * text format escapes newlines inside values) and holds the stream back so that rows flow at no
 * more than `maxRowsPerSecond` on average.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { Clock } from '../../kernel/clock';

/** Counts COPY text rows and throttles them. */
export class CopyThrottle extends Transform {
  readonly #clock: Clock;
  #maxRowsPerSecond: number | undefined;
  /** The wait in progress: its cancel, and what runs after it. */
  #waiting: { readonly cancel: () => void; readonly next: () => void } | undefined;
  readonly #onRows: (rows: number) => void;
  readonly #startedAt: number;
  #rows = 0;

  /** @param maxRowsPerSecond undefined for no limit. */
  constructor(clock: Clock, maxRowsPerSecond: number | undefined, onRows: (rows: number) => void) {
    super();
    this.#clock = clock;
    this.#maxRowsPerSecond = maxRowsPerSecond;
    this.#onRows = onRows;
    this.#startedAt = clock.monotonicNow();
  }

  /** Passes every row from now on without waiting, a wait in progress included. */
  lift(): void {
    this.#maxRowsPerSecond = undefined;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting === undefined) return;
    waiting.cancel();
    waiting.next();
  }

  /** Rows passed so far. */
  get rows(): number {
    return this.#rows;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pass(chunk, 0, callback);
  }

  /** A wait in progress ends with the stream (a pipeline aborted): nothing is pushed after it. */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#waiting?.cancel();
    this.#waiting = undefined;
    callback(error);
  }

  /**
   * Passes the rows of `chunk` from byte `from` on, a slice of at most {@link THROTTLE_SLICE_MILLIS}
   * worth of rows at a time, waiting after each slice as the rate requires: a chunk (often hundreds
   * of rows) passed whole and then waited for reached the target in bursts, each a burst of work
   * for the shards while the app writes.
   */
  #pass(chunk: Buffer, from: number, callback: TransformCallback): void {
    const max = this.#maxRowsPerSecond;
    const slice = max === undefined ? Infinity : Math.max(1, Math.ceil((max * THROTTLE_SLICE_MILLIS) / 1000));
    let rows = 0;
    let end = chunk.length;
    for (let at = chunk.indexOf(10, from); at !== -1; at = chunk.indexOf(10, at + 1)) {
      rows++;
      if (rows >= slice) {
        end = at + 1;
        break;
      }
    }
    this.#rows += rows;
    this.push(from === 0 && end === chunk.length ? chunk : chunk.subarray(from, end));
    if (rows > 0) this.#onRows(rows);
    const next = (): void => (end >= chunk.length ? callback() : this.#pass(chunk, end, callback));
    const delay = throttleDelayMillis(this.#rows, this.#clock.monotonicNow() - this.#startedAt, max);
    if (delay <= 0) {
      next();
      return;
    }
    const waiting = {
      cancel: this.#clock.setTimeout(() => {
        if (this.#waiting === waiting) this.#waiting = undefined;
        next();
      }, delay),
      next,
    };
    this.#waiting = waiting;
  }
}

/** Longest burst of rows the throttle passes at once, in milliseconds of its rate. */
export const THROTTLE_SLICE_MILLIS = 20;

/** How long to wait so that `rows` rows after `elapsedMillis` stay within `maxRowsPerSecond` (0: no wait). */
export function throttleDelayMillis(rows: number, elapsedMillis: number, maxRowsPerSecond: number | undefined): number {
  if (maxRowsPerSecond === undefined) return 0;
  return Math.max(0, (rows / maxRowsPerSecond) * 1000 - elapsedMillis);
}
