import { createQueryId, type CompiledQuery, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs, type QueryId, type QueryResult, type RootOperationNode, type UnknownRow } from 'kysely';
import { encodeShardKey, type ShardKeyValue } from '../../cluster/shard-key';

/** An explicit routing decision for one query, for what the operation-node tree cannot tell (raw SQL included). */
export type RouteHint =
  | { readonly kind: 'shard'; readonly shardId: string }
  | { readonly kind: 'key'; readonly key: ShardKeyValue };

// Per-query hints, keyed by the QueryId Kysely passes both to plugins and (inside the CompiledQuery) to the driver.
const hints = new WeakMap<QueryId, RouteHint>();

/** The hint a plugin attached to this query, if any. */
export function routeHintOf(queryId: QueryId): RouteHint | undefined {
  return hints.get(queryId);
}

class RouteHintPlugin implements KyselyPlugin {
  constructor(private readonly hint: RouteHint) {}

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    hints.set(args.queryId, this.hint);
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}

/**
 * Sends every query of `db.withPlugin(withShard(id))` to shard `id`, whatever the query says.
 * Use it for raw SQL, administrative queries and deliberate single-shard reads of a keyless query.
 */
export function withShard(shardId: string): KyselyPlugin {
  return new RouteHintPlugin(Object.freeze({ kind: 'shard', shardId }));
}

/**
 * Sends every query of `db.withPlugin(withShardKey(key))` to the shard owning `key`. If the query
 * also names shard keys that live elsewhere, it fails rather than run on the wrong shard.
 */
export function withShardKey(key: ShardKeyValue): KyselyPlugin {
  encodeShardKey(key); // refuse a bad key here, where the caller can see it
  return new RouteHintPlugin(Object.freeze({ kind: 'key', key }));
}

/** A copy of `compiled` with a new query id that carries `hint`. */
function hinted<R>(compiled: CompiledQuery<R>, hint: RouteHint): CompiledQuery<R> {
  const queryId = createQueryId();
  hints.set(queryId, hint);
  return Object.freeze({ ...compiled, queryId });
}

/**
 * A compiled query that runs on shard `shardId`, for `db.executeQuery(...)` (plugins such as
 * {@link withShard} never run on a `CompiledQuery`): `db.executeQuery(onShard(query.compile(), 'shard1'))`.
 * Works for `sql` templates compiled with `.compile(db)` and inside transactions too.
 */
export function onShard<R>(compiled: CompiledQuery<R>, shardId: string): CompiledQuery<R> {
  return hinted(compiled, Object.freeze({ kind: 'shard', shardId }));
}

/** A compiled query that runs on the shard owning `key` (see {@link onShard} and {@link withShardKey}). */
export function onShardKey<R>(compiled: CompiledQuery<R>, key: ShardKeyValue): CompiledQuery<R> {
  encodeShardKey(key);
  return hinted(compiled, Object.freeze({ kind: 'key', key }));
}

// Queries marked by withPrimary(), keyed like the hints.
const primaryOnly = new WeakSet<QueryId>();

/** Whether `db.withPlugin(withPrimary())` marked this query. */
export function isPrimaryOnly(queryId: QueryId): boolean {
  return primaryOnly.has(queryId);
}

class PrimaryOnlyPlugin implements KyselyPlugin {
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    primaryOnly.add(args.queryId);
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}

/**
 * Runs every read of `db.withPlugin(withPrimary())` on its shard's primary even when replica reads
 * are on: for SELECTs with effects a standby cannot have or would keep to itself (advisory locks,
 * `set_config`, `nextval`, functions that write) and for reads that must see the latest data.
 */
export function withPrimary(): KyselyPlugin {
  return new PrimaryOnlyPlugin();
}
