/**
 * `kysely-scale/admin`: the topology catalog every instance follows, and what operators use to
 * change the topology safely.
 *
 * @packageDocumentation
 */
export { TopologyCatalog, TOPOLOGY_CATALOG_DEFAULTS, type PublishedTopology, type TopologyCatalogOptions, type TopologyWatch } from './topology-catalog';
export { followCatalog, type TopologyFollower } from './follow-catalog';
export { CatalogTimeoutError, CATALOG_DEADLINE_DEFAULTS, type CatalogDeadlines } from './catalog-connections';
export { PublishOutcomeUnknownError, type PublishPrecondition } from './topology-catalog';
export { fromDocument, toDocument, type TopologyDocument } from './topology-document';
export {
  catalogStatus,
  initCatalog,
  migrateCatalogShards,
  parseShardArgument,
  type CatalogStatus,
  type CatalogStatusOptions,
  type InitOptions,
  type InitResult,
  type ShardArgument,
} from './admin-commands';
export {
  migrateShards,
  MIGRATE_SHARDS_DEFAULTS,
  type MigrateShardsOptions,
  type MigrationTableOptions,
  type ShardMigrationResult,
  type ShardMigrationResultSet,
  type ShardTarget,
} from './shard-migrations';
export { shardMigrationStatus, type MigrationStatus, type ShardMigrationStatus } from './migration-status';
export { checkShardServers, type ShardServers } from './server-checks';
export { startDashboard, type DashboardOptions, type DashboardSnapshot, type RunningDashboard } from './dashboard/dashboard-server';
export { liveStatus, LIVE_STATUS_DEFAULTS, type LiveStatus, type LiveStatusOptions, type ServerHealth, type ShardLiveStatus } from './live-status';
export { SERVER_CLIENT_DEFAULTS, type ServerClientOptions } from './server-client-options';
export { TopologyConflictError, OperatorBusyError, ServerCheckError, type ServerProblem } from './admin-errors';
export * from './mover';
