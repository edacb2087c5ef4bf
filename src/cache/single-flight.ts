/**
 * One in-flight load per key per process. Callers that ask for a key while its load runs share the
 * same promise. A flight can be marked stale (an invalidation arrived while it ran): its result is
 * still returned to the waiting callers but must not be written to L1.
 * @internal
 */
export interface Flight<T> {
  readonly key: string;
  readonly promise: Promise<T>;
  /** Tags the loaded value will carry; a tag invalidation marks matching flights stale. */
  readonly tags: readonly string[];
  /** Set when an invalidation of this key, one of its tags, or its namespace arrived during the load. */
  stale: boolean;
}

/** @internal */
export class SingleFlight<T> {
  private readonly flights = new Map<string, Flight<T>>();

  /** The running flight for `key`, if any. */
  get(key: string): Flight<T> | undefined {
    return this.flights.get(key);
  }

  /**
   * Joins the running flight for `key` or starts one with `run`, which receives the flight so it can
   * check `stale` before filling. The flight is forgotten once it settles.
   */
  run(key: string, tags: readonly string[], run: (flight: Flight<T>) => Promise<T>): Flight<T> {
    const existing = this.flights.get(key);
    if (existing !== undefined) return existing;
    const flight = { key, tags, stale: false } as { -readonly [K in keyof Flight<T>]: Flight<T>[K] };
    this.flights.set(key, flight);
    let p: Promise<T>;
    try {
      p = run(flight);
    } catch (error) {
      p = Promise.reject(error);
    }
    // Registered before any caller's handler: the flight is forgotten before its callers resume.
    p.then(
      () => this.forget(key, flight),
      () => this.forget(key, flight),
    );
    flight.promise = p;
    return flight;
  }

  private forget(key: string, flight: Flight<T>): void {
    if (this.flights.get(key) === flight) this.flights.delete(key);
  }

  /**
   * Marks the flight of `key` stale and detaches it: its callers still get its result, but a caller
   * arriving after the invalidation starts a new load instead of joining one that began before it.
   */
  markKey(key: string): void {
    const f = this.flights.get(key);
    if (f !== undefined) {
      f.stale = true;
      this.flights.delete(key);
    }
  }

  /** Marks stale and detaches every flight that matches (see {@link SingleFlight.markKey}). */
  markWhere(match: (flight: Flight<T>) => boolean): void {
    for (const [key, f] of this.flights) {
      if (match(f)) {
        f.stale = true;
        this.flights.delete(key);
      }
    }
  }

  /** Number of loads running. */
  get size(): number {
    return this.flights.size;
  }
}
