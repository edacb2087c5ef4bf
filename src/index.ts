/**
 * kysely-scale: sharding for Kysely on PostgreSQL. The cache (`kysely-scale/cache`), the balancer
 * (`kysely-scale/balancer`) and the test cluster (`kysely-scale/testing`) are separate entry points,
 * so importing the core loads no Redis or HTTP client.
 *
 * @packageDocumentation
 */
export { ErrorCodes, KyselyScaleError, ConfigError, type ErrorCode } from './kernel/errors';
export { ShardKeyError, TopologyError } from './cluster/cluster-errors';
export {
  RoutingError,
  CrossShardTransactionError,
  TransactionAbortedError,
  PartialWriteError,
  DialectDestroyedError,
  type RoutingErrorCode,
} from './sharding/sharding-errors';
export { redactUrl, redactText } from './kernel/redact';
export { encodeShardKey, MAX_SHARD_KEY_BYTES, type ShardKeyValue } from './cluster/shard-key';
export { slotOf, DEFAULT_SLOT_COUNT } from './cluster/slot-hash';
export {
  createTopology,
  type Topology,
  type TopologyInput,
  type Shard,
  type ShardInput,
  type ServerSpec,
} from './cluster/topology';
export { ShardedDialect } from './sharding/dialect/sharded-dialect';
export type { ShardedDialectConfig, CursorConstructor } from './sharding/dialect/sharded-dialect-config';
export { SERVER_POOL_DEFAULTS, type ServerPoolOptions, type PoolLike, type PoolClientLike } from './cluster/server-pools';
export type { KeylessPolicy, RoutePlan, RoutePart } from './sharding/routing/route-planner';
export { withPrimary, withShard, withShardKey, onShard, onShardKey, type RouteHint } from './sharding/routing/route-hint';
export type { WriteEvent, WriteListener } from './sharding/dialect/write-event';
export type { RouteEvent, RouteListener, RouteServer } from './sharding/dialect/statement-telemetry';
export { SLOT_FUNCTIONS_SQL } from './cluster/slot-function-sql';
export { ReadYourWritesContext } from './replication/read-your-writes';
export { REPLICA_READ_DEFAULTS, type ReplicaReadOptions, type ReplicaStatus } from './replication/replica-router';
export type { ReplicaEvent, ReplicaEventListener, ReplicaState, PrimaryState } from './replication/replica-events';
export { PrimaryUnavailableError, ReadYourWritesUnavailableError, ReplicaStreamInterruptedError } from './replication/replication-errors';
export { isConnectionFailure, isReadOnlyRefusal, isRecoveryConflict } from './cluster/connection-failure';
export {
  StaleTopologyError,
  fenceRefusalOf,
  STALE_TOPOLOGY_SQLSTATE,
  SLOT_FENCED_SQLSTATE,
  type FenceRefusal,
} from './cluster/topology-fence';
export type { TopologySource } from './cluster/topology-catch-up';
