import { createHash } from 'node:crypto';
import type { CompiledQuery, QueryResult } from 'kysely';
import { ConfigError } from '../kernel/errors';
import { requireBoolean, requireFunction, requireKnownKeys, requireNonEmptyString, requireObject } from '../kernel/validate';
import { isReplicaFenceDialect, ReplicaFence, type ReplicaFenceDialect } from './query-cache-fence';
import type { WriteEvent, WriteListener } from '../sharding/dialect/write-event';
import type { TieredCache } from './tiered-cache';

/**
 * Where write events come from: a `ShardedDialect` fits as it is (`new QueryCache({ cache, writeEvents: dialect })`;
 * it emits after a write succeeded outside a transaction, or after its transaction committed, and
 * never for a rollback), or anything with the same method.
 */
export interface WriteEventSource {
  onWrite(listener: WriteListener): () => void;
}

/** Runs a compiled query; a `Kysely` instance fits. */
export interface QueryExecutor {
  executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>>;
}

/** A Kysely select builder (anything with `compile()`). */
export interface CompilableQuery<R> {
  compile(): CompiledQuery<R>;
}

/** Options of {@link QueryCache}. */
export interface QueryCacheOptions {
  /** The tiered cache that stores the rows. */
  cache: TieredCache;
  /**
   * The cache policy used for query results (configure it in the cache's `policies`).
   * @default 'query_results'
   */
  policy?: string;
  /**
   * Write events that invalidate cached results of the written tables; without it, call
   * {@link QueryCache.invalidateTables} yourself after writes.
   * @default undefined
   */
  writeEvents?: WriteEventSource;
  /**
   * Decides which shard a query targets (part of the key and of the tags); `null` when it spans
   * all shards or is unknown. Per-call `shardId` wins.
   * @default () => null
   */
  shardOf?: (query: CompiledQuery) => string | null;
  /**
   * The `ShardedDialect` the queries run on. When its replica reads are on, a result is loaded
   * only from a replica that had replayed everything its primary had written when the load
   * started (else from the primary), so the cache never stores rows older than an invalidation;
   * `rows()` must then be given the `Kysely` instance.
   * @default `writeEvents`, when it is a `ShardedDialect`
   */
  dialect?: ReplicaFenceDialect;
  /**
   * Whether loads are fenced as `dialect` says. Turning it off lets a load that follows a write
   * cache a replica's rows from before it (until the TTL); one primary round trip per miss is saved.
   * @default true
   */
  replicaFence?: boolean;
}

/** Defaults of {@link QueryCacheOptions}. */
export const QUERY_CACHE_DEFAULTS = Object.freeze({ policy: 'query_results', replicaFence: true });

const OPTION_KEYS: readonly (keyof QueryCacheOptions)[] = ['cache', 'policy', 'writeEvents', 'shardOf', 'dialect', 'replicaFence'];

/** Options of one cached query. */
export interface CachedQueryOptions {
  /** The shard the query runs on; `null`/absent for all shards. */
  shardId?: string | null;
  /** Tables the result depends on, when they cannot be read from the query (raw SQL). */
  tables?: readonly string[];
}

const ANY_SHARD = '*';
/**
 * The tag of a table's results on one shard (`*`: results that span shards).
 * @internal
 */
export const tableTag = (table: string, shardId: string | null): string => `t:${table}@${shardId ?? ANY_SHARD}`;

/**
 * Caches the rows of Kysely selects, keyed by target shard, compiled SQL and parameters, and
 * tagged by the tables they read. A write event on table T of shard S invalidates the results
 * tagged T@S and T@* (cross-shard results); a write with an unknown table invalidates all.
 */
export class QueryCache {
  private readonly cache: TieredCache;
  private readonly policy: string;
  private readonly shardOf: (q: CompiledQuery) => string | null;
  private readonly unsubscribe: () => void;
  private readonly inflight = new Set<Promise<void>>();
  private readonly fence: ReplicaFence | null;

  constructor(options: QueryCacheOptions) {
    requireKnownKeys('', requireObject('options', options), OPTION_KEYS);
    if (options.cache === undefined) throw new ConfigError('cache', 'is required');
    this.cache = options.cache;
    this.policy = requireNonEmptyString('policy', options.policy ?? QUERY_CACHE_DEFAULTS.policy);
    this.cache.policy(this.policy); // throws UnknownCachePolicyError early
    this.shardOf = options.shardOf === undefined ? () => null : requireFunction('shardOf', options.shardOf, '(query) => string | null');
    const writeEvents = options.writeEvents;
    if (writeEvents !== undefined) requireFunction('writeEvents.onWrite', writeEvents?.onWrite, '(listener) => unsubscribe');
    const dialect = options.dialect ?? (isReplicaFenceDialect(writeEvents) ? writeEvents : undefined);
    if (dialect !== undefined && !isReplicaFenceDialect(dialect)) throw new ConfigError('dialect', 'must be a ShardedDialect (readYourWrites, replicaStatus, topology)');
    this.fence = requireBoolean('replicaFence', options.replicaFence ?? QUERY_CACHE_DEFAULTS.replicaFence) && dialect !== undefined ? new ReplicaFence(dialect) : null;
    this.unsubscribe = writeEvents?.onWrite((events) => this.onWrite(events)) ?? (() => {});
  }

  /** Rows of `query`, from the cache or by running it on `db`. */
  async rows<R>(db: QueryExecutor, query: CompilableQuery<R> | CompiledQuery<R>, options: CachedQueryOptions = {}): Promise<R[]> {
    const compiled = 'compile' in query ? query.compile() : query;
    const shardId = options.shardId !== undefined ? options.shardId : this.shardOf(compiled);
    const tables = options.tables ?? tablesOf(compiled.query);
    if (tables.length === 0) throw new ConfigError('tables', 'the query names no table; pass `tables` so writes can invalidate its result');
    const key = queryKey(shardId, compiled);
    const tags = tables.map((t) => tableTag(t, shardId));
    const run = async (): Promise<R[]> => (await db.executeQuery(compiled)).rows as R[];
    const fence = this.fence;
    return this.cache.getOrLoad(this.policy, key, fence === null ? run : () => fence.run(db, shardId, run), { tags });
  }

  /** Invalidates cached results that read `tables` on `shardId` (or on any shard when null). */
  invalidateTables(tables: readonly string[], shardId: string | null = null): Promise<void> {
    const tags = new Set<string>();
    for (const t of tables) {
      tags.add(tableTag(t, ANY_SHARD));
      if (shardId !== null) tags.add(tableTag(t, shardId));
    }
    return this.cache.invalidateTags([...tags]);
  }

  /** Resolves when the invalidations started by write events so far have reached Redis and the bus. */
  async settled(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }

  private onWrite(events: readonly WriteEvent[]): void {
    const tags = new Set<string>();
    let all = false;
    for (const e of events) {
      if (e.table === null) all = true;
      else {
        tags.add(tableTag(e.table, e.shardId));
        tags.add(tableTag(e.table, null));
      }
    }
    // A WriteListener must not throw: the cache reports its own failures as events.
    const p = (all ? this.cache.invalidateNamespace(this.policy) : this.cache.invalidateTags([...tags]))
      .catch((error) => void this.cache.events.emit('error', { policy: this.policy, error }))
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  /** Stops listening to write events and waits for the invalidations they started. */
  async close(): Promise<void> {
    this.unsubscribe();
    await this.settled();
  }
}

/**
 * `<shard>|<sha256 of SQL and parameters>`; the SQL can be long, the key stays short.
 * @internal
 */
export function queryKey(shardId: string | null, compiled: CompiledQuery): string {
  const h = createHash('sha256');
  h.update(compiled.sql);
  h.update('\u0000');
  h.update(JSON.stringify(compiled.parameters, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Date ? `D${v.toISOString()}` : v)));
  return `${shardId ?? ANY_SHARD}|${h.digest('base64url')}`;
}

/**
 * Names (without schema) of every table an operation-node tree mentions: FROM, JOIN, subqueries, CTEs.
 * @internal
 */
export function tablesOf(node: unknown): string[] {
  const out = new Set<string>();
  const visit = (n: unknown): void => {
    if (typeof n !== 'object' || n === null) return;
    if (Array.isArray(n)) {
      for (const x of n) visit(x);
      return;
    }
    const o = n as { kind?: string; table?: { identifier?: { name?: string } } };
    // Column references (`o2.id`) name an alias, not a table: only FROM/JOIN/subquery tables count.
    if (o.kind === 'ReferenceNode') return;
    if (o.kind === 'TableNode' && typeof o.table?.identifier?.name === 'string') out.add(o.table.identifier.name);
    for (const v of Object.values(o)) if (typeof v === 'object') visit(v);
  };
  visit(node);
  return [...out];
}
