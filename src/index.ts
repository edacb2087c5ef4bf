/**
 * kysely-scale: sharding for Kysely on PostgreSQL. The cache (`kysely-scale/cache`), the balancer
 * (`kysely-scale/balancer`) and the test cluster (`kysely-scale/testing`) are separate entry points,
 * so importing the core loads no Redis or HTTP client.
 *
 * @packageDocumentation
 */
export * from './errors';
export { encodeShardKey, type ShardKeyValue } from './sharding/shard-key';
export { slotOf, DEFAULT_SLOT_COUNT } from './sharding/slot-hash';
export {
  createTopology,
  type Topology,
  type TopologyInput,
  type Shard,
  type ShardInput,
  type ServerSpec,
} from './sharding/topology';
export { ShardedDialect } from './sharding/sharded-dialect';
export type { ShardedDialectConfig, CursorConstructor } from './sharding/sharded-dialect-config';
export { SERVER_POOL_DEFAULTS, type ServerPoolOptions, type PoolLike, type PoolClientLike } from './sharding/server-pools';
export type { KeylessPolicy, RoutePlan, RoutePart } from './sharding/route-planner';
export { withPrimary, withShard, withShardKey, type RouteHint } from './sharding/route-hint';
export type { WriteEvent, WriteListener } from './sharding/write-event';
export { SLOT_FUNCTIONS_SQL } from './sharding/slot-function-sql';
export { ReadYourWritesContext } from './replicas/read-your-writes';
export { REPLICA_READ_DEFAULTS, type ReplicaReadOptions, type ReplicaStatus } from './replicas/replica-router';
export { isConnectionFailure, isReadOnlyRefusal, isRecoveryConflict } from './replicas/connection-failure';
