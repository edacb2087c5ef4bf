import type { Topology } from '../cluster/topology';
import { topologyArrived } from '../cluster/topology-catch-up';
import type { TopologyCatalog, TopologyWatch } from './topology-catalog';

/** What {@link followCatalog} needs of a dialect (a `ShardedDialect` fits). */
export interface TopologyFollower {
  readonly topology: Topology;
  setTopology(topology: Topology): void;
}

/**
 * Keeps a dialect on the catalog's latest topology: every newer published version is applied with
 * `setTopology` (in-flight statements finish where they were sent). A version the dialect refuses
 * (another slot count, a dropped unsharded shard) goes to `onError` and the dialect keeps its map.
 * Statements refused by a fence and waiting for the version (the dialect's `topologySource` being
 * this same catalog object) retry as soon as it is applied, not at their next read of the catalog.
 */
export function followCatalog(dialect: TopologyFollower, catalog: TopologyCatalog, onError: (error: Error) => void = () => undefined): Promise<TopologyWatch> {
  return catalog.watch((topology) => {
    if (topology.version <= dialect.topology.version) return;
    try {
      dialect.setTopology(topology);
    } catch (error) {
      onError(error as Error);
      return;
    }
    topologyArrived(catalog);
  }, onError);
}
