/**
 * The injected clock's timers never keep the process alive (background check loops must not).
 * A wait a caller awaits must: otherwise a script whose only pending work is, say, a
 * read-your-writes read waiting for a replica to replay exits silently with code 0 in the middle.
 * While at least one such wait runs, one ref'd Node interval (that never fires in practice) holds
 * the event loop; it is cleared when the last wait settles.
 */

let waits = 0;
let handle: ReturnType<typeof setInterval> | undefined;

function noop(): void {}

/** Keeps the process alive until `promise` settles; returns it unchanged. */
export function keepAliveWhile<T>(promise: Promise<T>): Promise<T> {
  if (waits++ === 0) handle = setInterval(noop, 1_000_000_000);
  const done = (): void => {
    if (--waits === 0 && handle !== undefined) {
      clearInterval(handle);
      handle = undefined;
    }
  };
  promise.then(done, done);
  return promise;
}

/** Waits that keep the process alive now (for tests). */
export function keptAliveWaits(): number {
  return waits;
}
