/**
 * The table knowledge the router gets from the dialect config beyond shard keys: each sharded
 * table's keyless policy (reads and writes separately), and which tables are declared unsharded.
 */
import { ConfigError, ErrorCodes } from '../../kernel/errors';
import { describeValue, requireKnownKeys } from '../../kernel/validate';
import { RoutingError } from '../sharding-errors';

/** What a keyless statement on a sharded table does: refuse (`error`) or run on every shard (`scatter`). */
export type KeylessAction = 'error' | 'scatter';

/**
 * The keyless policy of a sharded table. `'scatter'` lets keyless reads run on every shard and
 * merge, while keyless writes stay refused; `{ read: 'scatter', write: 'scatter' }` lets keyless
 * UPDATE and DELETE run on every shard too (not atomic across shards). `'error'` refuses both.
 */
export type KeylessPolicy = KeylessAction | { readonly read?: KeylessAction; readonly write?: KeylessAction };

/** A keyless policy with both actions spelled out. */
export interface ResolvedKeylessPolicy {
  readonly read: KeylessAction;
  readonly write: KeylessAction;
}

const ACTIONS: readonly KeylessAction[] = ['error', 'scatter'];
const READ_SCATTER: ResolvedKeylessPolicy = Object.freeze({ read: 'scatter', write: 'error' });
const NONE: ResolvedKeylessPolicy = Object.freeze({ read: 'error', write: 'error' });

/** Validates a keyless policy option (`option` names it in errors). */
export function resolveKeylessPolicy(option: string, value: unknown): ResolvedKeylessPolicy {
  if (value === 'error') return NONE;
  if (value === 'scatter') return READ_SCATTER;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(option, `must be 'error', 'scatter' or { read, write } with each 'error' or 'scatter', got ${describeValue(value)}`);
  }
  requireKnownKeys(option, value as Record<string, unknown>, ['read', 'write']);
  const { read = 'error', write = 'error' } = value as { read?: unknown; write?: unknown };
  for (const [name, action] of [['read', read], ['write', write]] as const) {
    if (!ACTIONS.includes(action as KeylessAction)) throw new ConfigError(`${option}.${name}`, `must be 'error' or 'scatter', got ${describeValue(action)}`);
  }
  return Object.freeze({ read: read as KeylessAction, write: write as KeylessAction });
}

// Tables PostgreSQL and kysely-scale own (catalogs, introspection, the slot functions' schema):
// never user data, present on every shard.
const SYSTEM_SCHEMAS: ReadonlySet<string> = new Set(['pg_catalog', 'information_schema', 'kysely_scale']);

/** Whether an unsharded table name (as the analysis spells it: `name` or `schema.name`) is a system table. */
export function isSystemTable(name: string): boolean {
  const dot = name.indexOf('.');
  return dot < 0 ? name.startsWith('pg_') : SYSTEM_SCHEMAS.has(name.slice(0, dot));
}

/**
 * The refusal of a statement on a table declared neither sharded nor unsharded, under
 * `strictTables` with several shards: it names the table and both fixes.
 */
export function undeclaredTable(table: string, shardCount: number, unshardedShardId: string): RoutingError {
  return new RoutingError(
    ErrorCodes.UNROUTABLE_QUERY,
    `Table "${table}" is declared neither in shardKeys nor in unshardedTables; with ${shardCount} shards its rows would all stay on shard "${unshardedShardId}". ` +
      `Declare it: shardKeys: { ${table}: '<key column>' } to spread its rows over the shards, or unshardedTables: ['${table}'] to keep it on shard "${unshardedShardId}" ` +
      '(or set strictTables: false to allow every undeclared table).',
    { table, reason: 'undeclared table' },
  );
}
