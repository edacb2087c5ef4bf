/**
 * Planning on a one-shard topology: every statement runs on the only shard unchanged, and a plain
 * SELECT may be planned lean (its tree unread) when nothing needs its table and keys.
 */
import type { RootOperationNode, SelectQueryNode } from 'kysely';
import { analyzeQuery, statementKindOf, type QueryAnalysis } from './query-analysis';
import type { Shard } from '../../cluster/topology';
import type { RoutePlan, RoutingRules } from './route-plan';

/**
 * With one shard every statement runs there unchanged (a drop-in for PostgresDialect): raw SQL,
 * MERGE, keyless or unlinked queries, whatever tables are declared. The analysis still names the
 * written table and keys (write events), nested writes and locks (primary-only reads); when it
 * cannot read the tree (an ambiguous name, a key that is not one), the statement still runs, and
 * a read is kept on the primary since it might write.
 */
export function planOnOnlyShard(root: RootOperationNode, shard: Shard, rules: RoutingRules): RoutePlan {
  let analysis: QueryAnalysis;
  try {
    analysis = analyzeQuery(root, rules);
  } catch {
    const statement = statementKindOf(root);
    return statement === 'select' ? { kind: 'single', statement, table: null, shard, keys: null, primaryOnly: true } : { kind: 'single', statement, table: null, shard, keys: null };
  }
  const insert = analysis.insert;
  const keys = insert !== undefined ? (insert.problem === undefined ? insert.rowKeys : null) : (analysis.scopes[0]?.keys ?? null);
  const plan: RoutePlan = { kind: 'single', statement: analysis.statement, table: writtenTable(analysis), shard, keys };
  const locks = root.kind === 'SelectQueryNode' && ((root as SelectQueryNode).endModifiers?.length ?? 0) > 0;
  const nested = analysis.nestedWrites.length > 0;
  if (!locks && !nested) return plan;
  return { ...plan, ...(nested ? { nestedWrites: analysis.nestedWrites } : {}), ...(locks ? { primaryOnly: true as const } : {}) };
}

/**
 * A SELECT on the only shard planned without reading its tree: its `table` and `keys` are worked
 * out when first read (an onRoute hook that looks at them), which on the hot path nothing does
 * (the caller asks for a lean plan only when no replica choice, span or metric needs them). Only
 * a WITH clause can hold a write in a SELECT (PostgreSQL allows data-modifying statements in WITH
 * at the top level only), so a SELECT without one is a read; with one it is analysed in full for
 * its nested writes.
 */
export function leanSelect(root: SelectQueryNode, shard: Shard, rules: RoutingRules): RoutePlan {
  if (root.with !== undefined) return planOnOnlyShard(root, shard, rules);
  return new LeanSelectPlan(shard, (root.endModifiers?.length ?? 0) > 0 ? true : undefined, root, rules);
}

/**
 * A lean one-shard SELECT's plan whose table and keys are read from its tree when first asked for.
 * A class rather than an object literal with getters (which V8 builds on a slow path, ~10 µs);
 * `toJSON` lists the worked-out fields, as a plain plan would serialise. Spreading it (`{ ...plan }`)
 * would drop the getters: the dialect never does so with a lean plan (only with replicas on).
 */
class LeanSelectPlan {
  readonly kind = 'single' as const;
  readonly statement = 'select' as const;
  readonly shard: Shard;
  readonly primaryOnly?: true;
  readonly #root: SelectQueryNode;
  readonly #rules: RoutingRules;
  #full: RoutePlan | undefined;

  constructor(shard: Shard, primaryOnly: true | undefined, root: SelectQueryNode, rules: RoutingRules) {
    this.shard = shard;
    if (primaryOnly === true) this.primaryOnly = true;
    this.#root = root;
    this.#rules = rules;
  }

  get table(): string | null {
    return this.#details().table;
  }

  get keys(): readonly unknown[] | null {
    const full = this.#details();
    return full.kind === 'single' ? full.keys : null;
  }

  toJSON(): RoutePlan {
    return { ...this.#details() };
  }

  #details(): RoutePlan {
    return (this.#full ??= planOnOnlyShard(this.#root, this.shard, this.#rules));
  }
}

/** The table a write statement writes (the root scope's first table), for write events. */
export function writtenTable(analysis: QueryAnalysis): string | null {
  const root = analysis.scopes[0];
  return root?.shardedTables[0] ?? root?.unshardedTables[0] ?? null;
}

