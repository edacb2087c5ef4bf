/**
 * The metrics of routed statements. Names follow OpenTelemetry's database semantic conventions
 * where one exists (`db.client.operation.duration`, `db.client.connection.count`); the rest are
 * `kysely_scale.*`. Prometheus names are given beside them.
 */
import { DURATION_BUCKETS_SECONDS, defineMetric } from '../../kernel/telemetry';

/** Attribute keys shared by the statement metrics and spans. */
export const ATTR = Object.freeze({
  system: 'db.system.name',
  operation: 'db.operation.name',
  collection: 'db.collection.name',
  errorType: 'error.type',
  statusCode: 'db.response.status_code',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  routeKind: 'kysely_scale.route.kind',
  shardId: 'kysely_scale.shard.id',
  shardIds: 'kysely_scale.shard.ids',
  role: 'kysely_scale.server.role',
  fanOut: 'kysely_scale.fan_out',
  primaryRetries: 'kysely_scale.primary_retries',
  outcome: 'kysely_scale.outcome',
  readReason: 'kysely_scale.read.reason',
  poolName: 'db.client.connection.pool.name',
  connectionState: 'db.client.connection.state',
});

/** Duration of each routed statement, from routing to its (merged) result. */
export const STATEMENT_DURATION = defineMetric({
  name: 'db.client.operation.duration',
  prometheusName: 'db_client_operation_duration_seconds',
  description: 'Duration of database client operations (one routed statement, all its shards).',
  unit: 's',
  kind: 'histogram',
  attributes: [ATTR.system, ATTR.operation, ATTR.collection, ATTR.routeKind, ATTR.errorType],
  buckets: DURATION_BUCKETS_SECONDS,
});

/** Statements each server ran, by shard, role and outcome (a scatter counts once per shard). */
export const STATEMENTS = defineMetric({
  name: 'kysely_scale.statements',
  prometheusName: 'kysely_scale_statements_total',
  description: 'Statements run on a shard server, by shard, server role and outcome.',
  unit: '{statement}',
  kind: 'counter',
  attributes: [ATTR.shardId, ATTR.role, ATTR.outcome, ATTR.operation],
});

/** Failed statements by error type (a kysely-scale code such as `E_NO_SHARD_KEY`, a SQLSTATE, or the error's class). */
export const STATEMENT_ERRORS = defineMetric({
  name: 'kysely_scale.statement.errors',
  prometheusName: 'kysely_scale_statement_errors_total',
  description: 'Failed statements by error type (kysely-scale code, SQLSTATE or error class).',
  unit: '{statement}',
  kind: 'counter',
  attributes: [ATTR.errorType, ATTR.operation, ATTR.routeKind],
});

/** How many shards a statement over several shards ran on. */
export const FAN_OUT = defineMetric({
  name: 'kysely_scale.scatter.fan_out',
  prometheusName: 'kysely_scale_scatter_fan_out',
  description: 'Shards a scatter, split or broadcast statement ran on.',
  unit: '{shard}',
  kind: 'histogram',
  attributes: [ATTR.routeKind, ATTR.operation],
  buckets: [1, 2, 3, 4, 6, 8, 12, 16, 32, 64],
});

/**
 * Plain reads by the role of the server that answered and why: `replica`, or why the primary
 * answered (`replicas_off`, `no_replicas`, `no_eligible_replica` (lagging or unhealthy),
 * `read_your_writes` (no replica had replayed the caller's write yet), `primary_only` (a lock or
 * `withPrimary()`), `session` (the connection ran raw SQL), `transaction`, `replica_failed`).
 */
export const READS = defineMetric({
  name: 'kysely_scale.reads',
  prometheusName: 'kysely_scale_reads_total',
  description: 'Plain reads by shard, the role of the server that answered, and why.',
  unit: '{statement}',
  kind: 'counter',
  attributes: [ATTR.shardId, ATTR.role, ATTR.readReason],
});

/** WAL bytes each replica was behind its primary at its last check. */
export const REPLICA_LAG = defineMetric({
  name: 'kysely_scale.replica.lag',
  prometheusName: 'kysely_scale_replica_lag_bytes',
  description: 'WAL bytes a replica was behind its primary at its last check.',
  unit: 'By',
  kind: 'gauge',
  attributes: [ATTR.shardId, ATTR.poolName],
});

/** Upper bound of how old each replica's data is now (the bound `maxLagMillis` checks), in seconds. */
export const REPLICA_STALENESS = defineMetric({
  name: 'kysely_scale.replica.staleness',
  prometheusName: 'kysely_scale_replica_lag_seconds',
  description: 'Upper bound of how old a replica\'s data is now (what maxLagMillis bounds); absent while nothing proves one.',
  unit: 's',
  kind: 'gauge',
  attributes: [ATTR.shardId, ATTR.poolName],
});

/**
 * Waits of read-your-writes reads for a replica to replay the caller's position (none was known
 * to have), by how they ended: `replica` (one confirmed it and took the read), `primary` (none did
 * within `replayWaitMillis`: the primary read), `unavailable` (none did and the primary is down:
 * `E_READ_YOUR_WRITES_UNAVAILABLE`).
 */
export const READ_YOUR_WRITES_WAIT = defineMetric({
  name: 'kysely_scale.read_your_writes.wait.duration',
  prometheusName: 'kysely_scale_read_your_writes_wait_duration_seconds',
  description: 'Time read-your-writes reads waited for a replica to replay their position, by shard and outcome (replica, primary, unavailable).',
  unit: 's',
  kind: 'histogram',
  attributes: [ATTR.shardId, ATTR.outcome],
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
});

/** 1 while a replica serves reads. */
export const REPLICA_ELIGIBLE = defineMetric({
  name: 'kysely_scale.replica.eligible',
  prometheusName: 'kysely_scale_replica_eligible',
  description: '1 while a replica serves reads (healthy and within maxLagBytes).',
  unit: '1',
  kind: 'gauge',
  attributes: [ATTR.shardId, ATTR.poolName],
});

/** Connections of each server's pool by state (`used`, `idle`). */
export const POOL_CONNECTIONS = defineMetric({
  name: 'db.client.connection.count',
  prometheusName: 'db_client_connection_count',
  description: 'Connections of a server pool by state (used, idle).',
  unit: '{connection}',
  kind: 'gauge',
  attributes: [ATTR.poolName, ATTR.connectionState],
});

/** Checkouts waiting for a connection of each server's pool. */
export const POOL_PENDING = defineMetric({
  name: 'db.client.connection.pending_requests',
  prometheusName: 'db_client_connection_pending_requests',
  description: 'Checkouts waiting for a connection of a server pool.',
  unit: '{request}',
  kind: 'gauge',
  attributes: [ATTR.poolName],
});
