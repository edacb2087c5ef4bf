/**
 * Waiting for a load with the policy's deadlines: after `softTimeoutMillis` a stale value within
 * grace is served instead, after `hardTimeoutMillis` the stale value (or
 * `CacheLoaderTimeoutError`), and a loader error falls back to the stale value too. The stale
 * value is only served while it is still the key's current entry: an invalidation (or a
 * write-through) during the wait removed or replaced it, and serving it afterwards would hand out
 * a value older than a completed invalidation.
 */
import type { Cancel, Clock } from '../kernel/clock';
import { CacheLoaderTimeoutError } from './cache-errors';
import type { PolicyState } from './cache-policy-state';
import type { CacheEntry } from './memory-tier';
import type { Flight } from './single-flight';

/**
 * The flight's result within the policy's deadlines.
 * @param stale the key's stale entry within grace when the wait began, if any
 * @param currentEntry the key's L1 entry now, when its tags are current
 * @internal
 */
export function awaitLoad(
  clock: Clock,
  st: PolicyState,
  key: string,
  flight: Flight<unknown>,
  stale: CacheEntry | undefined,
  currentEntry: () => CacheEntry | undefined,
): Promise<unknown> {
  const { softTimeoutMillis: soft, hardTimeoutMillis: hard } = st.policy;
  if (hard === 0 && (stale === undefined || soft === 0)) return flight.promise;
  return new Promise((resolve, reject) => {
    const timers: Cancel[] = [];
    let done = false;
    const finish = (fn: () => void): void => {
      if (done) return;
      done = true;
      for (const cancel of timers) cancel();
      fn();
    };
    const servable = (): CacheEntry | undefined => (stale === undefined || flight.stale ? undefined : currentEntry());
    const serveStale = (e: CacheEntry): void => {
      st.staleServed++;
      resolve(e.value);
    };
    flight.promise.then(
      (v) => finish(() => resolve(v)),
      (err) => {
        const e = servable();
        finish(() => (e !== undefined ? serveStale(e) : reject(err)));
      },
    );
    if (stale !== undefined && soft > 0) {
      timers.push(
        clock.setTimeout(() => {
          const e = servable();
          if (e !== undefined) finish(() => serveStale(e)); // else keep waiting for the load or the hard timeout
        }, soft),
      );
    }
    if (hard > 0) {
      timers.push(
        clock.setTimeout(() => {
          const e = servable();
          finish(() => (e !== undefined ? serveStale(e) : reject(new CacheLoaderTimeoutError(`${st.policy.name}:${key}`, hard))));
        }, hard),
      );
    }
  });
}
