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
  /** Between reads of the source. @default 2 */
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

/** Applies newer topologies from `source` to `holder` until it is at `version` or newer; false when `waitMillis` ran out first. */
export async function catchUpTopology(holder: TopologyHolder, source: TopologySource, version: number, options: CatchUpTopologyOptions = {}): Promise<boolean> {
  const clock = options.clock ?? systemClock;
  const deadline = clock.monotonicNow() + (options.waitMillis ?? 5000);
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
      } catch {
        // Another path (a catalog watch) may have applied it meanwhile.
      }
      if (holder.topology.version >= version) return true;
    }
    if (clock.monotonicNow() >= deadline) return false;
    await new Promise<void>((resolve) => clock.setTimeout(resolve, options.pollMillis ?? 2));
  }
}
