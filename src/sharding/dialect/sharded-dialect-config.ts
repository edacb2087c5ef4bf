import { ConfigError, ErrorCodes } from '../../kernel/errors';
import { RoutingError } from '../sharding-errors';
import { resolveReplicaReadOptions, type ReplicaReadOptions, type ResolvedReplicaReadOptions } from '../../replication/replica-router';
import type { ShardKeySpec } from '../routing/query-analysis';
import { canonicalIntegerKey, canonicalUuidKey } from '../../cluster/shard-key';
import type { KeylessPolicy, RoutingRules } from '../routing/route-planner';
import { SERVER_POOL_DEFAULTS, type PoolLike, type ServerPoolOptions } from '../../cluster/server-pools';
import type { Topology, ServerSpec } from '../../cluster/topology';

/** A cursor class with pg-cursor's constructor (used by `stream()`). */
export type CursorConstructor = new (text: string, values?: unknown[]) => {
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
   */
  shardKeys: Readonly<Record<string, string | ShardKeyColumn>>;
  /** The schema unqualified table names resolve to. @default 'public' */
  defaultSchema?: string;
  /**
   * What a query on a sharded table does when it names no shard key, per table:
   * `error` (refuse, naming the table and the fixes) or `scatter` (run on every shard, merge the results).
   * @default {} (every table uses `defaultKeylessPolicy`)
   */
  keylessPolicy?: Readonly<Record<string, KeylessPolicy>>;
  /** Keyless policy of sharded tables not listed in `keylessPolicy`. @default 'error' */
  defaultKeylessPolicy?: KeylessPolicy;
  /** The shard holding every table not in `shardKeys` (an unsharded keyspace). @default the first shard */
  unshardedShardId?: string;
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
}

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
  readonly pool: Readonly<Required<ServerPoolOptions>>;
  readonly replicas: ResolvedReplicaReadOptions;
  readonly createPool: ((server: ServerSpec) => PoolLike) | undefined;
  readonly cursor: CursorConstructor | undefined;
  readonly onPoolError: (error: Error, server: { readonly redactedUrl: string }) => void;
}

const POLICIES: Record<KeylessPolicy, true> = { error: true, scatter: true };

const KEY_CANONICALISERS: Record<ShardKeyType, (value: unknown, table: string, column: string) => unknown> = {
  auto: (value) => value,
  text: (value) => value,
  integer: canonicalIntegerKey,
  uuid: canonicalUuidKey,
};

/** Validates a config; errors name the option to change. */
export function resolveShardedConfig(config: ShardedDialectConfig): ResolvedShardedConfig {
  if (config === null || typeof config !== 'object') throw new ConfigError('config', 'pass an object with `topology` and `shardKeys`');
  const { topology } = config;
  if (topology === null || typeof topology !== 'object' || typeof topology.shardForKey !== 'function') {
    throw new ConfigError('topology', 'build it with createTopology({ shards: [...] })');
  }
  const shardKeys = new Map<string, ShardKeySpec>();
  if (config.shardKeys === null || typeof config.shardKeys !== 'object') {
    throw new ConfigError('shardKeys', "map each sharded table to its key column, e.g. { orders: 'user_id' }");
  }
  for (const [table, entry] of Object.entries(config.shardKeys)) {
    const { column, type = 'auto' } = typeof entry === 'string' ? { column: entry } : (entry ?? ({} as ShardKeyColumn));
    if (typeof column !== 'string' || column === '') throw new ConfigError(`shardKeys.${table}`, "must be the key column name, or { column, type }");
    const canonical = KEY_CANONICALISERS[type];
    if (canonical === undefined) throw new ConfigError(`shardKeys.${table}.type`, `must be one of ${Object.keys(KEY_CANONICALISERS).join(', ')}; got ${JSON.stringify(type)}`);
    shardKeys.set(table, Object.freeze({ table, column, canonical: (value: unknown) => canonical(value, table, column) }));
  }
  const defaultSchema = config.defaultSchema ?? 'public';
  if (typeof defaultSchema !== 'string' || defaultSchema === '') throw new ConfigError('defaultSchema', 'must be a schema name');
  // Sharded tables configured only with a schema, by their bare name: an unqualified reference to one is ambiguous.
  const qualifiedByBare = new Map<string, string>();
  for (const name of shardKeys.keys()) {
    const dot = name.indexOf('.');
    if (dot > 0 && name.slice(0, dot) !== defaultSchema) qualifiedByBare.set(name.slice(dot + 1), name);
  }
  const defaultPolicy = config.defaultKeylessPolicy ?? 'error';
  if (POLICIES[defaultPolicy] !== true) throw new ConfigError('defaultKeylessPolicy', `must be 'error' or 'scatter'; got ${JSON.stringify(defaultPolicy)}`);
  const policies = new Map<string, KeylessPolicy>();
  for (const [table, policy] of Object.entries(config.keylessPolicy ?? {})) {
    if (!shardKeys.has(table)) throw new ConfigError(`keylessPolicy.${table}`, `"${table}" is not a sharded table; list it in shardKeys first`);
    if (POLICIES[policy] !== true) throw new ConfigError(`keylessPolicy.${table}`, `must be 'error' or 'scatter'; got ${JSON.stringify(policy)}`);
    policies.set(table, policy);
  }
  const unshardedShardId = config.unshardedShardId ?? topology.shards[0]!.id;
  if (topology.shardById(unshardedShardId) === undefined) {
    throw new ConfigError('unshardedShardId', `no shard "${unshardedShardId}" in the topology`);
  }
  const pool = { ...SERVER_POOL_DEFAULTS, ...definedOnly(config.pool ?? {}) };
  for (const name of ['max', 'idleTimeoutMillis', 'connectionTimeoutMillis', 'statementTimeoutMillis'] as const) {
    const value = pool[name];
    if (!Number.isInteger(value) || value < (name === 'max' ? 1 : 0)) throw new ConfigError(`pool.${name}`, `must be an integer ≥ ${name === 'max' ? 1 : 0}; got ${String(value)}`);
  }
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
  });
  return Object.freeze({
    topology,
    rules,
    pool: Object.freeze(pool),
    replicas: resolveReplicaReadOptions(config.replicas),
    createPool: config.createPool,
    cursor: config.cursor,
    onPoolError: config.onPoolError ?? defaultPoolError,
  });
}

function defaultPoolError(error: Error, server: { readonly redactedUrl: string }): void {
  process.emitWarning(`kysely-scale: idle connection to ${server.redactedUrl} failed: ${error.message}`, 'KyselyScalePoolWarning');
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
