/**
 * A bounded latency histogram with logarithmic buckets (about 2% relative error from 10 µs to
 * days), so percentiles cost constant memory however many calls are recorded.
 */
const MIN_MILLIS = 0.01;
const GROWTH = 1.04;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = 720;

/** @internal Counts of latencies in log-spaced buckets, with exact count, sum and maximum. */
export class LatencyHistogram {
  readonly #counts = new Uint32Array(BUCKETS);
  #count = 0;
  #sumMillis = 0;
  #maxMillis = 0;

  /** Adds one latency in ms. */
  record(millis: number): void {
    const value = Math.max(0, millis);
    const index = value <= MIN_MILLIS ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(value / MIN_MILLIS) / LOG_GROWTH));
    this.#counts[index] = (this.#counts[index] as number) + 1;
    this.#count++;
    this.#sumMillis += value;
    if (value > this.#maxMillis) this.#maxMillis = value;
  }

  get count(): number {
    return this.#count;
  }

  get sumMillis(): number {
    return this.#sumMillis;
  }

  /**
   * The latency at quantile `q` (0 to 1), in ms: the upper edge of the bucket holding it (never
   * above the largest recorded value); `undefined` when empty.
   */
  quantile(q: number): number | undefined {
    if (this.#count === 0) return undefined;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i] as number;
      if (seen >= rank) return Math.min(this.#maxMillis, MIN_MILLIS * GROWTH ** i);
    }
    return this.#maxMillis;
  }
}
