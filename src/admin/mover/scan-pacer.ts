/**
 * The mover's duty cycle (gh-ost's nice ratio) and load probe (as Vitess's throttler and gh-ost's
 * max-load): after each slice of streaming work the mover holds the stream back for `niceRatio`
 * times as long as the slice took, so the shard backends producing and consuming it wait on full
 * socket buffers instead of taking CPU from the app's statements. Then, when a probe is given, it
 * times a trivial statement on the batch's shards and, while that is slower than
 * `probeSlowMillis` (the servers are saturated by other work), keeps waiting, doubling the wait,
 * for at most {@link MAX_YIELD_MILLIS} per slice (the probes' own time included), so a move on a
 * saturated cluster still progresses.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { Clock } from '../../kernel/clock';

/**
 * Length of a slice of work between pauses: short, so no app statement waits long behind one.
 * 3 ms: against 10 ms, the app's write p99 during a copy throttled to 10,000 rows/s fell from
 * 5.1–6.4 to 3.0–4.6 ms in the resharding benchmark (1,000 writes/s, two runs each, 2 cores).
 */
export const PACE_SLICE_MILLIS = 3;

/** Most a slice waits for slow probes beyond its nice-ratio pause, the probes' own time included. */
export const MAX_YIELD_MILLIS = 1000;

/** How a stream of the mover is paced. */
export interface ScanPace {
  readonly clock: Clock;
  /** Pause after each slice, as a multiple of the slice's time (0: no pause). */
  readonly niceRatio: number;
  /** Length of a slice of work between pauses, in milliseconds. */
  readonly sliceMillis: number;
  /** A probe slower than this means the servers are saturated: wait longer. */
  readonly probeSlowMillis: number;
  /** Round trip of a trivial statement on the shards the work runs on, in milliseconds; `deadlineMillis` when they do not answer in that time. */
  readonly probe?: (deadlineMillis: number) => Promise<number>;
  /**
   * Aborted when the work can never commit any more (the command's operator lock was lost): a
   * stream fails at its next chunk, a pause ends at once, each with the signal's reason.
   */
  readonly signal?: AbortSignal;
}

/** A pass-through stream that runs in slices of `sliceMillis` and yields after each ({@link yieldAfter}). */
export class ScanPacer extends Transform {
  readonly #pace: ScanPace;
  #sliceStart: number | undefined;

  constructor(pace: ScanPace) {
    super();
    this.#pace = pace;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#pace.signal?.aborted === true) {
      callback(this.#pace.signal.reason as Error);
      return;
    }
    const now = this.#pace.clock.monotonicNow();
    this.#sliceStart ??= now;
    this.push(chunk);
    const busy = now - this.#sliceStart;
    if (busy < this.#pace.sliceMillis) {
      callback();
      return;
    }
    yieldAfter(busy, this.#pace).then(
      () => {
        this.#sliceStart = undefined; // the next slice starts with the next chunk
        callback();
      },
      (error: unknown) => callback(error as Error),
    );
  }
}

/**
 * Yields after `busyMillis` of work (a slice of a stream, or a finished statement: a delete, a
 * catch-up pass): `niceRatio` times as long, then, while the probe is slow, longer.
 */
export async function yieldAfter(busyMillis: number, pace: ScanPace): Promise<void> {
  const { signal } = pace;
  signal?.throwIfAborted();
  const wait = async (millis: number): Promise<void> => {
    // The signal may have fired while the probe ran: a listener added now would never be called.
    signal?.throwIfAborted();
    await new Promise<void>((resolve) => {
      const cancel = pace.clock.setTimeout(done, millis);
      signal?.addEventListener('abort', stop, { once: true });
      function done(): void {
        signal?.removeEventListener('abort', stop);
        resolve();
      }
      function stop(): void {
        cancel();
        done();
      }
    });
    signal?.throwIfAborted();
  };
  const delay = pace.niceRatio > 0 ? busyMillis * pace.niceRatio : 0;
  if (delay > 0) await wait(delay);
  if (pace.probe === undefined) return;
  // Elapsed clock time, so a probe that takes long (a saturated server) counts against the bound.
  const started = pace.clock.monotonicNow();
  const left = (): number => MAX_YIELD_MILLIS - (pace.clock.monotonicNow() - started);
  let backoff = Math.max(pace.sliceMillis, delay);
  while (left() > 0 && (await pace.probe(left())) > pace.probeSlowMillis) {
    const step = Math.min(backoff, left());
    if (step <= 0) return;
    await wait(step);
    backoff *= 2;
  }
}
