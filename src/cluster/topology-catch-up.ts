/**
 * Bringing a router's topology up to a version a shard asked for (a fence refusal names it): read
 * the latest published topology until it is at least that version, apply it, and say whether that
 * happened before the deadline. Shared by the dialect and by `retryOnFence`.
 */
import { systemClock, type Clock } from '../kernel/clock';
import { DeadlineError, withDeadline } from '../kernel/deadline';
import type { Topology } from './topology';

/** Where the latest published topology is read (a `TopologyCatalog` fits). */
export interface TopologySource {
  latest(): Promise<Topology | undefined>;
}

/** What is brought up to date (a `ShardedDialect` fits). */
export interface TopologyHolder {
  readonly topology: Topology;
  setTopology(topology: Topology): void;
}

/** Options of {@link catchUpTopology}. */
export interface CatchUpTopologyOptions {
  /** @default 5000 */
  readonly waitMillis?: number;
  /** First wait between reads of the source (then doubled, up to {@link MAX_POLL_MILLIS}). @default 2 */
  readonly pollMillis?: number;
  /** @default systemClock */
  readonly clock?: Clock;
}

// Holders refused at the same moment share one read of a source instead of queueing on its pool.
const inFlight = new WeakMap<TopologySource, Promise<Topology | undefined>>();

function latestOnce(source: TopologySource): Promise<Topology | undefined> {
  let pending = inFlight.get(source);
  if (pending === undefined) {
    pending = source.latest().finally(() => inFlight.delete(source));
    inFlight.set(source, pending);
  }
  return pending;
}

// Waits between reads of a source, woken early by {@link topologyArrived} (a watch of the source applied a version).
const sleepers = new WeakMap<TopologySource, Set<() => void>>();

/**
 * Says that a newer topology from `source` was just applied to its holders (`followCatalog` calls
 * it after each version its watch applies, on the catalog's NOTIFY): routers waiting in
 * {@link catchUpTopology} on the same source look again at once instead of at their next read.
 */
export function topologyArrived(source: TopologySource): void {
  const waiting = sleepers.get(source);
  if (waiting === undefined) return;
  sleepers.delete(source);
  for (const wake of waiting) wake();
}

/** Waits `millis` on `clock`, or until {@link topologyArrived} is called for `source`. */
function pauseOrArrival(source: TopologySource, clock: Clock, millis: number): Promise<void> {
  return new Promise<void>((resolve) => {
    let waiting = sleepers.get(source);
    if (waiting === undefined) sleepers.set(source, (waiting = new Set()));
    const set = waiting;
    const done = (): void => {
      cancel();
      set.delete(done);
      resolve();
    };
    const cancel = clock.setTimeout(done, millis);
    set.add(done);
  });
}

/**
 * Applies newer topologies from `source` to `holder` until it is at `version` or newer; false when
 * `waitMillis` ran out first. Between reads of the source it waits `pollMillis`, doubling up to
 * {@link MAX_POLL_MILLIS} (a refused router reads the catalog a few hundred times a second at most
 * while a cutover lasts), and wakes at once when a watch of the same source applied a version
 * ({@link topologyArrived}): a router that follows the catalog retries as soon as the NOTIFY of
 * the new version arrives.
 */
export async function catchUpTopology(holder: TopologyHolder, source: TopologySource, version: number, options: CatchUpTopologyOptions = {}): Promise<boolean> {
  const clock = options.clock ?? systemClock;
  const deadline = clock.monotonicNow() + (options.waitMillis ?? 5000);
  let poll = options.pollMillis ?? 2;
  for (;;) {
    if (holder.topology.version >= version) return true;
    // A catalog that stops answering must not hold the caller past its deadline.
    const remaining = deadline - clock.monotonicNow();
    if (remaining <= 0) return false;
    let latest: Topology | undefined;
    try {
      latest = await withDeadline(latestOnce(source), remaining, 'the topology source', { clock });
    } catch (error) {
      if (error instanceof DeadlineError) return false;
      throw error;
    }
    if (latest !== undefined && latest.version > holder.topology.version) {
      try {
        holder.setTopology(latest);
        // Routers refused at the same cutover and sleeping between their reads retry now too, not at their next poll.
        topologyArrived(source);
      } catch {
        // Another path (a catalog watch) may have applied it meanwhile.
      }
    }
    // Also when another router or a watch applied the version while this read was on its way (a wake then finds no sleeper).
    if (holder.topology.version >= version) return true;
    const left = deadline - clock.monotonicNow();
    if (left <= 0) return false;
    await pauseOrArrival(source, clock, Math.min(poll, left));
    poll = Math.min(poll * 2, Math.max(MAX_POLL_MILLIS, options.pollMillis ?? 2));
  }
}

/** Longest wait between two reads of the source by {@link catchUpTopology} (unless `pollMillis` is longer). */
export const MAX_POLL_MILLIS = 8;
