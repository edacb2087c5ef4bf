/**
 * `kysely-scale/admin`: the topology catalog every instance follows, and what operators use to
 * change the topology safely.
 *
 * @packageDocumentation
 */
export { TopologyCatalog, TOPOLOGY_CATALOG_DEFAULTS, type PublishedTopology, type TopologyCatalogOptions, type TopologyWatch } from './topology-catalog';
export { followCatalog, type TopologyFollower } from './follow-catalog';
export { fromDocument, toDocument, type TopologyDocument } from './topology-document';
export { catalogStatus, initCatalog, parseShardArgument, type CatalogStatus, type InitResult, type ShardArgument } from './admin-commands';
export { TopologyConflictError, OperatorBusyError } from './admin-errors';
