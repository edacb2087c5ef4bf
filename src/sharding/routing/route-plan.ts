/**
 * The routing decision's types: what the planner knows of tables ({@link RoutingRules}) and what
 * it decides ({@link RoutePlan}), shared by the planner, its one-shard path and the dialect.
 */
import type { OperationNode, RootOperationNode } from 'kysely';
import type { NestedWrite, ShardKeyLookup, StatementKind } from './query-analysis';
import type { Shard } from '../../cluster/topology';
import type { ResolvedKeylessPolicy } from './table-rules';

/** The table knowledge the planner needs, derived once from the dialect config. */
export interface RoutingRules extends ShardKeyLookup {
  /** The keyless policy of a sharded table (reads and writes). */
  keylessPolicyOf(table: string): ResolvedKeylessPolicy;
  /**
   * Id of the shard that holds every table not listed in `shardKeys`: the holder the topology
   * records (the catalog does once a drain moved them), else the `unshardedShardId` option, else
   * the first shard. The dialect's runtime swaps in new rules when a topology names another holder.
   */
  readonly unshardedShardId: string;
  /**
   * Whether a table not in `shardKeys` may be used when there are several shards: declared in
   * `unshardedTables`, a system table, or `strictTables` is off.
   */
  allowsUnsharded(table: string): boolean;
}

/** One shard's share of a statement that spans several shards. */
export interface RoutePart {
  readonly shard: Shard;
  /** The statement to run there (the original, or a copy narrowed to this shard's keys or rows). */
  readonly node: RootOperationNode;
  /** The shard keys this part covers, when known. */
  readonly keys: readonly unknown[] | null;
  /** For a split insert: the positions of this part's rows in the original VALUES list. */
  readonly rowIndexes?: readonly number[];
  /**
   * For a split insert with RETURNING: its rows also return the shard key as a hidden column
   * (`RETURNED_KEY`), so rows a shard skipped (ON CONFLICT DO NOTHING) can be told apart.
   */
  readonly returnsKey?: true;
}

/**
 * The routing decision for one statement. Cheap to build; `nestedWrites` lists writes inside it
 * (data-modifying CTEs); `primaryOnly` marks a read that must run on a primary (a locking clause
 * such as FOR UPDATE, or `withPrimary()`).
 */
export type RoutePlan = RoutePlanTarget & { readonly nestedWrites?: readonly NestedWrite[]; readonly primaryOnly?: true };

/** A plan that names several shards. */
export type SpreadPlan = Exclude<RoutePlan, { kind: 'single' }>;

type RoutePlanTarget =
  | { readonly kind: 'single'; readonly statement: StatementKind; readonly table: string | null; readonly shard: Shard; readonly keys: readonly unknown[] | null }
  | { readonly kind: 'split'; readonly statement: StatementKind; readonly table: string | null; readonly parts: readonly RoutePart[] }
  | { readonly kind: 'scatter'; readonly statement: StatementKind; readonly table: string | null; readonly shards: readonly Shard[] }
  | { readonly kind: 'broadcast'; readonly statement: StatementKind; readonly table: null; readonly shards: readonly Shard[] };

/** Whether a statement may write: anything but a SELECT, or a SELECT with data-modifying CTEs. */
export function planMayWrite(plan: RoutePlan): boolean {
  return plan.statement !== 'select' || plan.nestedWrites !== undefined;
}

