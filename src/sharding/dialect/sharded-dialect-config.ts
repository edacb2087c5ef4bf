import { systemClock, type Clock } from '../../kernel/clock';
import type { TopologySource } from '../../cluster/topology-catch-up';
import { ConfigError, ErrorCodes } from '../../kernel/errors';
import { describeValue, requireFunction, requireInteger, requireKnownKeys, requireNonEmptyString, requireObject, requireOneOf } from '../../kernel/validate';
import { RoutingError } from '../sharding-errors';
import { resolveReplicaReadOptions, type ReplicaReadOptions, type ResolvedReplicaReadOptions } from '../../replication/replica-router';
import type { ShardKeySpec } from '../routing/key-constraint';
import { canonicalIntegerKey, canonicalUuidKey } from '../../cluster/shard-key';
import type { RoutingRules } from '../routing/route-planner';
import { isSystemTable, resolveKeylessPolicy, type KeylessPolicy, type ResolvedKeylessPolicy } from '../routing/table-rules';
import { SERVER_POOL_DEFAULTS, type PoolLike, type ServerPoolOptions } from '../../cluster/server-pools';
import type { Topology, ServerSpec } from '../../cluster/topology';
import type { RouteListener } from './statement-telemetry';

/** A cursor class with pg-cursor's constructor (used by `stream()`). */
export type CursorConstructor = new (
  text: string,
  values?: unknown[],
  config?: { types?: { getTypeParser(oid: number, format?: string): (value: string) => unknown } },
) => {
  read(rows: number): Promise<unknown[]>;
  close(): Promise<void>;
};

/** Configuration of {@link ShardedDialect}. The dialect copies what it needs; later changes to this object have no effect. */
export interface ShardedDialectConfig {
  /** The shards and who owns each slot. Replace it at run time with `dialect.setTopology()`. */
  topology: Topology;
  /**
   * Sharded tables and their shard key column: `{ orders: 'user_id', users: 'id' }`, or with the
   * key's type, `{ orders: { column: 'user_id', type: 'integer' } }` so literal keys written as text
   * (`'05'`, `' 5'`) route as PostgreSQL will store them. Table names may be schema-qualified (`app.orders`).
   * May be omitted with one shard, where every statement runs unchanged.
   * @default {}
   */
  shardKeys?: Readonly<Record<string, string | ShardKeyColumn>>;
  /** The schema unqualified table names resolve to. @default 'public' */
  defaultSchema?: string;
  /**
   * What a statement on a sharded table does when it names no shard key, per table: `'error'`
   * (refuse, naming the table and the fixes); `'scatter'` (reads run on every shard and merge;
   * keyless UPDATE/DELETE stay refused); or `{ read, write }` with each `'error'` or `'scatter'`:
   * `{ read: 'scatter', write: 'scatter' }` also runs keyless writes on every shard (not atomic).
   * @default {} (every table uses `defaultKeylessPolicy`)
   */
  keylessPolicy?: Readonly<Record<string, KeylessPolicy>>;
  /** Keyless policy of sharded tables not listed in `keylessPolicy`. @default 'error' */
  defaultKeylessPolicy?: KeylessPolicy;
  /**
   * The shard holding every table not in `shardKeys` (an unsharded keyspace), for topologies that
   * do not record one. Once the topology records the holder (the catalog does after a drain moved
   * the unsharded tables), the topology wins, at construction and on every `setTopology`; an option
   * naming another shard is then overridden (with a process warning at construction), never an error,
   * so instances restarted after a drain keep working.
   * @default the first shard
   */
  unshardedShardId?: string;
  /**
   * Tables kept whole on `unshardedShardId`, by name (schema-qualified or not, like `shardKeys`).
   * With `strictTables`, a table must be listed here or in `shardKeys` to be used with several shards.
   * @default []
   */
  unshardedTables?: readonly string[];
  /**
   * With more than one shard, refuse statements on tables declared neither in `shardKeys` nor in
   * `unshardedTables` (`E_UNROUTABLE_QUERY`, naming the table and both fixes), so a table forgotten
   * the day a second shard is added is caught instead of silently staying on one shard. PostgreSQL's
   * catalogs (`pg_catalog`, `information_schema`, `pg_*`) and the `kysely_scale` schema are always
   * allowed; DDL, raw SQL and a one-shard topology are not checked. `false` allows every undeclared table.
   * @default true
   */
  strictTables?: boolean;
  /** Options of the pg Pool created for each server. */
  pool?: ServerPoolOptions;
  /** Builds the pool of a server instead of a pg `Pool` (custom drivers, instrumentation, fault injection). */
  createPool?: (server: ServerSpec) => PoolLike;
  /** Cursor class for `stream()`. @default pg-cursor, loaded on first use */
  cursor?: CursorConstructor;
  /**
   * Called when an idle pooled connection fails (e.g. the server restarted). The URL is redacted.
   * @default emits a Node.js process warning
   */
  onPoolError?: (error: Error, server: { readonly redactedUrl: string }) => void;
  /** Reads from the shards' streaming replicas (off unless `readFrom: 'replica'`). */
  replicas?: ReplicaReadOptions;
  /** The time source of replica read latencies (inject a `ManualClock` in tests). @default systemClock */
  clock?: Clock;
  /**
   * Called once per statement after it settled, with its route plan and the servers that ran it
   * (shard id, role, redacted URL), the reads its primary answered for a failed replica, its
   * duration and its error. Cheap enough to leave on; an exception it throws becomes a process
   * warning, never the statement's error.
   * @default undefined
   */
  onRoute?: RouteListener;
  /**
   * Where the dialect reloads the topology when a shard refuses a statement for a slot move
   * (SQLSTATE KS001 or KS002; a `TopologyCatalog` fits). The statement then runs once more,
   * routed by the new topology. Without it, or when the version the shard asks for is not
   * published within `fenceWaitMillis`, the statement fails with `StaleTopologyError`
   * (`E_STALE_TOPOLOGY`, retryable; nothing was written). Inside a transaction it always fails
   * that way: retry the transaction.
   * @default undefined
   */
  topologySource?: TopologySource;
  /**
   * How long to wait for the topology version a refusal asks for, and then for each primary
   * session the connection holds to take it (at least 1000 ms for that; held replica sessions are
   * closed instead).
   * @default 5000
   */
  fenceWaitMillis?: number;
  /**
   * Tell each shard which topology version a connection routes by (the session setting
   * `kysely_scale.topology_version`), so a shard that slots moved to or from refuses a stale
   * router's reads and writes instead of answering them. The dialect's own pools carry it from
   * each connection's start, and set it again on a pooled connection only after the version
   * changed. A custom `createPool` gets it (a `set_config` on checkout) only when this is `true`.
   * @default true for the dialect's own pools, false for a custom `createPool`
   */
  fenceSessions?: boolean;
  /**
   * Run a scatter's shard statement that has parameters as a prepared statement once it repeats,
   * so each shard parses it once per pooled connection instead of on every call (at most 200
   * names per dialect). The dialect's own pools plan every execution afresh (`plan_cache_mode =
   * force_custom_plan`, PostgreSQL 12+), because the slot fence is checked while a statement is
   * planned; a custom `createPool` must do the same before setting this. A statement the schema
   * changed under (result columns or parameter types) runs again unnamed. When a connection turns out not to keep prepared statements
   * (a pooler in transaction mode before PgBouncer 1.21), the dialect stops preparing by itself;
   * set `false` behind such a pooler, or for a server older than PostgreSQL 12.
   * @default true for the dialect's own pools, false for a custom `createPool`
   */
  prepareScatterStatements?: boolean;
}

/** The options of {@link ShardedDialectConfig}, for refusing unknown (misspelt) ones. */
const CONFIG_KEYS: readonly (keyof ShardedDialectConfig)[] = [
  'topology', 'shardKeys', 'defaultSchema', 'keylessPolicy', 'defaultKeylessPolicy', 'unshardedShardId', 'unshardedTables', 'strictTables',
  'pool', 'createPool', 'cursor', 'onPoolError', 'replicas', 'clock', 'onRoute', 'topologySource', 'fenceWaitMillis', 'fenceSessions',
  'prepareScatterStatements',
];

/** A shard key column with its type. */
export interface ShardKeyColumn {
  column: string;
  /**
   * How literal key values are read before hashing: `integer` parses integer text (`'05'` → `5`) and
   * refuses anything else; `uuid` accepts any UUID spelling and lower-cases it; `text` and `auto`
   * take values as the key contract encodes them.
   * @default 'auto'
   */
  type?: ShardKeyType;
}

/** The type of a shard key column, see {@link ShardKeyColumn.type}. */
export type ShardKeyType = 'auto' | 'integer' | 'text' | 'uuid';

/** The validated, frozen form of a {@link ShardedDialectConfig}. */
export interface ResolvedShardedConfig {
  readonly topology: Topology;
  readonly rules: RoutingRules;
  /** The holder of the unsharded tables for topologies that record none (the option, else the first shard). */
  readonly defaultUnshardedShardId: string;
  readonly pool: Readonly<Required<ServerPoolOptions>>;
  readonly replicas: ResolvedReplicaReadOptions;
  readonly createPool: ((server: ServerSpec) => PoolLike) | undefined;
  readonly cursor: CursorConstructor | undefined;
  readonly onPoolError: (error: Error, server: { readonly redactedUrl: string }) => void;
  readonly clock: Clock;
  readonly onRoute: RouteListener | undefined;
  readonly topologySource: TopologySource | undefined;
  readonly fenceWaitMillis: number;
  /** Whether checked-out connections are tagged with the topology version. */
  readonly fenceSessions: boolean;
  readonly prepareScatterStatements: boolean;
}

const KEY_CANONICALISERS: Readonly<Record<ShardKeyType, (value: unknown, table: string, column: string) => unknown>> = Object.freeze({
  auto: (value: unknown) => value,
  text: (value: unknown) => value,
  integer: canonicalIntegerKey,
  uuid: canonicalUuidKey,
});
const KEY_TYPES = Object.keys(KEY_CANONICALISERS) as ShardKeyType[];

const POOL_INTEGERS = [
  ['max', 1],
  ['idleTimeoutMillis', 0],
  ['connectionTimeoutMillis', 0],
  ['statementTimeoutMillis', 0],
] as const;

/** Validates a config; errors are ConfigErrors that name the option to change. */
export function resolveShardedConfig(config: ShardedDialectConfig): ResolvedShardedConfig {
  requireObject('config', config);
  requireKnownKeys('', config, CONFIG_KEYS);
  const { topology } = config;
  if (topology === null || typeof topology !== 'object' || typeof topology.shardForKey !== 'function') {
    throw new ConfigError('topology', `must be a topology built with createTopology({ shards: [...] }), got ${describeValue(topology)}`);
  }
  const shardKeys = new Map<string, ShardKeySpec>();
  const shardKeyEntries = requireObject('shardKeys', config.shardKeys ?? {}) as Readonly<Record<string, string | ShardKeyColumn>>;
  for (const [table, entry] of Object.entries(shardKeyEntries)) {
    const { column, type = 'auto' } = typeof entry === 'string' ? { column: entry } : (entry ?? ({} as ShardKeyColumn));
    if (typeof column !== 'string' || column === '') {
      throw new ConfigError(`shardKeys.${table}`, `must be the key column name or { column, type }, got ${describeValue(entry)}`);
    }
    const canonical = KEY_CANONICALISERS[requireOneOf(`shardKeys.${table}.type`, type, KEY_TYPES)];
    shardKeys.set(table, Object.freeze({ table, column, canonical: (value: unknown) => canonical(value, table, column) }));
  }
  const defaultSchema = requireNonEmptyString('defaultSchema', config.defaultSchema ?? 'public');
  // Sharded tables configured only with a schema, by their bare name: an unqualified reference to one is ambiguous.
  const qualifiedByBare = new Map<string, string>();
  for (const name of shardKeys.keys()) {
    const dot = name.indexOf('.');
    if (dot > 0 && name.slice(0, dot) !== defaultSchema) qualifiedByBare.set(name.slice(dot + 1), name);
  }
  const defaultPolicy = resolveKeylessPolicy('defaultKeylessPolicy', config.defaultKeylessPolicy ?? 'error');
  const policies = new Map<string, ResolvedKeylessPolicy>();
  for (const [table, policy] of Object.entries(config.keylessPolicy ?? {})) {
    if (!shardKeys.has(table)) throw new ConfigError(`keylessPolicy.${table}`, `"${table}" is not a sharded table; list it in shardKeys first`);
    policies.set(table, resolveKeylessPolicy(`keylessPolicy.${table}`, policy));
  }
  const unsharded = new Set<string>();
  const unshardedList = config.unshardedTables ?? [];
  if (!Array.isArray(unshardedList)) throw new ConfigError('unshardedTables', `must be a list of table names, got ${describeValue(unshardedList)}`);
  for (const [i, name] of unshardedList.entries()) {
    const table = requireNonEmptyString(`unshardedTables[${i}]`, name);
    if (shardKeys.has(table)) throw new ConfigError(`unshardedTables[${i}]`, `"${table}" is also in shardKeys; a table is either sharded or unsharded`);
    unsharded.add(table.startsWith(`${defaultSchema}.`) ? table.slice(defaultSchema.length + 1) : table);
  }
  const strictTables = config.strictTables ?? true;
  if (typeof strictTables !== 'boolean') throw new ConfigError('strictTables', `must be true or false, got ${describeValue(strictTables)}`);
  const defaultUnshardedShardId = requireNonEmptyString('unshardedShardId', config.unshardedShardId ?? topology.shards[0]!.id);
  const recorded = topology.unshardedShardId;
  if (recorded === undefined && topology.shardById(defaultUnshardedShardId) === undefined) {
    throw new ConfigError('unshardedShardId', `must name a shard of the topology, got "${defaultUnshardedShardId}"`);
  }
  if (recorded !== undefined && config.unshardedShardId !== undefined && config.unshardedShardId !== recorded) {
    process.emitWarning(
      `kysely-scale: unshardedShardId "${config.unshardedShardId}" is overridden: topology version ${topology.version} records shard "${recorded}" as the holder of the unsharded tables (they were moved there); routing follows the topology.`,
      'KyselyScaleConfigWarning',
    );
  }
  const unshardedShardId = recorded ?? defaultUnshardedShardId;
  if (config.pool !== undefined) requireKnownKeys('pool', requireObject('pool', config.pool), Object.keys(SERVER_POOL_DEFAULTS));
  const pool = { ...SERVER_POOL_DEFAULTS, ...definedOnly(config.pool ?? {}) };
  for (const [name, min] of POOL_INTEGERS) requireInteger(`pool.${name}`, pool[name], min);
  if (config.createPool !== undefined) requireFunction('createPool', config.createPool, '(server) => PoolLike');
  if (config.cursor !== undefined) requireFunction('cursor', config.cursor, 'class like pg-cursor');
  if (config.onPoolError !== undefined) requireFunction('onPoolError', config.onPoolError, '(error, server) => void');
  const clock = config.clock ?? systemClock;
  requireFunction('clock.monotonicNow', requireObject('clock', clock).monotonicNow, '() => number');
  if (config.onRoute !== undefined) requireFunction('onRoute', config.onRoute, '(event) => void');
  if (config.topologySource !== undefined) requireFunction('topologySource.latest', requireObject('topologySource', config.topologySource).latest, '() => Promise<Topology | undefined>');
  const fenceWaitMillis = requireInteger('fenceWaitMillis', config.fenceWaitMillis ?? 5000, 0);
  const fenceSessions = config.fenceSessions ?? config.createPool === undefined;
  if (typeof fenceSessions !== 'boolean') throw new ConfigError('fenceSessions', `must be true or false, got ${describeValue(fenceSessions)}`);
  const prepareScatterStatements = config.prepareScatterStatements ?? config.createPool === undefined;
  if (typeof prepareScatterStatements !== 'boolean') throw new ConfigError('prepareScatterStatements', `must be true or false, got ${describeValue(prepareScatterStatements)}`);
  const rules: RoutingRules = Object.freeze({
    unshardedShardId,
    shardKeyOf(table: string, schema: string | undefined): ShardKeySpec | undefined {
      if (schema !== undefined && schema !== defaultSchema) return shardKeys.get(`${schema}.${table}`);
      const spec = shardKeys.get(table) ?? shardKeys.get(`${defaultSchema}.${table}`);
      if (spec === undefined && schema === undefined && qualifiedByBare.has(table)) {
        throw new RoutingError(
          ErrorCodes.UNROUTABLE_QUERY,
          `Table "${table}" is unqualified but the sharded table is "${qualifiedByBare.get(table)}": qualify it (e.g. db.withSchema(...)) so it cannot resolve to another table.`,
          { table },
        );
      }
      return spec;
    },
    keylessPolicyOf: (table: string) => policies.get(table) ?? defaultPolicy,
    allowsUnsharded(table: string): boolean {
      if (!strictTables || isSystemTable(table)) return true;
      return unsharded.has(table.startsWith(`${defaultSchema}.`) ? table.slice(defaultSchema.length + 1) : table);
    },
  });
  return Object.freeze({
    topology,
    rules,
    defaultUnshardedShardId,
    pool: Object.freeze(pool),
    replicas: resolveReplicaReadOptions(config.replicas),
    createPool: config.createPool,
    cursor: config.cursor,
    onPoolError: config.onPoolError ?? defaultPoolError,
    clock,
    onRoute: config.onRoute,
    topologySource: config.topologySource,
    fenceWaitMillis,
    fenceSessions,
    prepareScatterStatements,
  });
}

function defaultPoolError(error: Error, server: { readonly redactedUrl: string }): void {
  process.emitWarning(`kysely-scale: idle connection to ${server.redactedUrl} failed: ${error.message}`, 'KyselyScalePoolWarning');
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
