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
  readonly #maxRowsPerSecond: number | undefined;
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

  /** Rows passed so far. */
  get rows(): number {
    return this.#rows;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let rows = 0;
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) rows++;
    this.#rows += rows;
    this.push(chunk);
    if (rows > 0) this.#onRows(rows);
    const delay = throttleDelayMillis(this.#rows, this.#clock.monotonicNow() - this.#startedAt, this.#maxRowsPerSecond);
    if (delay <= 0) callback();
    else this.#clock.setTimeout(() => callback(), delay);
  }
}

/** How long to wait so that `rows` rows after `elapsedMillis` stay within `maxRowsPerSecond` (0: no wait). */
export function throttleDelayMillis(rows: number, elapsedMillis: number, maxRowsPerSecond: number | undefined): number {
  if (maxRowsPerSecond === undefined) return 0;
  return Math.max(0, (rows / maxRowsPerSecond) * 1000 - elapsedMillis);
}
