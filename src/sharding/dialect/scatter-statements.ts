/**
 * The shard statement of a scatter, planned and compiled once per distinct statement instead of
 * on every call: planning (a walk of the tree, hidden merge columns) and compiling the rewritten
 * tree cost more CPU than the rest of the dialect's work on a scatter.
 *
 * The plan of a SELECT is a function of its SQL text and its LIMIT/OFFSET values (the only values
 * the planner reads): PostgreSQL gives one SQL text one meaning, so the plan made for one tree is
 * right for any tree that compiles to the same text. What changes between calls is the values:
 * each parameter of the shard statement is taken from the original statement's parameter it was
 * compiled from (found once, by the value node it came from), or is the plan's own LIMIT n+m. A
 * statement whose parameters cannot all be traced that way is planned on every call, as before.
 */
import {
  OperationNodeTransformer,
  PostgresQueryCompiler,
  PrimitiveValueListNode,
  SelectQueryNode,
  ValueNode,
  type CompiledQuery,
  type OperationNode,
  type RootOperationNode,
} from 'kysely';
import { planScatter, type ScatterPlan, type ScatterPlanOptions } from '../scatter/scatter-plan';

/** A scatter's plan and the statement every shard runs. */
export interface ScatterStatement {
  readonly plan: ScatterPlan;
  readonly shard: CompiledQuery;
  /**
   * The name to run {@link ScatterStatement.shard} under as a prepared statement, once the
   * statement has repeated (a statement run once is not worth a name on every pooled connection).
   */
  readonly preparedName?: string;
}

/** Where a shard statement's parameter comes from: the index of an original parameter, or a value of the plan. */
type ParameterSource = number | { readonly value: unknown };

interface Entry {
  /** Calls served from this entry, to name it once it repeats. */
  uses: number;
  preparedName: string | undefined;
  readonly limit: unknown;
  readonly offset: unknown;
  readonly plan: ScatterPlan;
  readonly sql: string;
  readonly query: RootOperationNode;
  readonly sources: readonly ParameterSource[];
}

/** Distinct statements kept per dialect; the least recently used is dropped beyond this. */
const MAX_ENTRIES = 500;
/** Longer statements (long `in` lists, inlined values) are planned on every call: they rarely repeat, and each would keep its text. */
const MAX_SQL_LENGTH = 16_384;
/**
 * Prepared statement names one dialect hands out in its lifetime. A name stays prepared on each
 * pooled connection that ran it until the connection closes (an evicted or forgotten entry's too,
 * about 13 kB of server memory each), so the names are bounded; past this many, statements run
 * unnamed, as plain Kysely runs them.
 */
const MAX_PREPARED_NAMES = 200;
/** Names are unique in the process: a pooled connection must never see one name for two texts. */
let namesIssued = 0;

/** A PostgreSQL compiler that notes which value node (and list position) each parameter came from. */
class TracingCompiler extends PostgresQueryCompiler {
  readonly origins: { readonly node: OperationNode; readonly index: number }[] = [];

  protected override visitValue(node: ValueNode): void {
    if (node.immediate !== true) this.origins.push({ node, index: 0 });
    super.visitValue(node);
  }

  protected override visitPrimitiveValueList(node: PrimitiveValueListNode): void {
    for (let index = 0; index < node.values.length; index++) this.origins.push({ node, index });
    super.visitPrimitiveValueList(node);
  }
}

/** A copy of a tree without its parameters' values, so a remembered statement keeps no caller's values alive. */
class WithoutValues extends OperationNodeTransformer {
  protected override transformValue(node: ValueNode): ValueNode {
    return node.immediate === true ? node : ValueNode.create(undefined);
  }

  protected override transformPrimitiveValueList(node: PrimitiveValueListNode): PrimitiveValueListNode {
    return PrimitiveValueListNode.create(node.values.map(() => undefined));
  }
}

/** A LIMIT or OFFSET value as the cache keys it: a parameter's value, else `undefined` (the SQL text holds it). */
function countValue(node: OperationNode | undefined): unknown {
  return node?.kind === 'ValueNode' && (node as ValueNode).immediate !== true ? (node as ValueNode).value : undefined;
}

/** Plans and compiles scatter statements for one dialect, remembering each distinct one. */
export class ScatterStatements {
  readonly #options: ScatterPlanOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #prepare: boolean;
  #named = 0;
  #stopped = false;

  /** `prepare`: hand out prepared statement names for statements that repeat. */
  constructor(options: ScatterPlanOptions, prepare = false) {
    this.#options = options;
    this.#prepare = prepare;
  }

  /** Hands out no more prepared statement names (the connections do not keep them); names given stay. */
  stopPreparing(): void {
    this.#stopped = true;
  }

  /** Stops naming `sql`'s statement (its prepared statement no longer matches the schema, or a connection lost it): the next call plans it afresh, under a new name. */
  forget(sql: string): void {
    this.#entries.delete(sql);
  }

  /** The plan of `compiled` and the statement its shards run (with `compiled`'s query id and values). */
  statementFor(compiled: CompiledQuery): ScatterStatement {
    const node = compiled.query;
    const limit = SelectQueryNode.is(node) ? countValue(node.limit?.limit) : undefined;
    const offset = SelectQueryNode.is(node) ? countValue(node.offset?.offset) : undefined;
    const entry = this.#entries.get(compiled.sql);
    if (entry !== undefined && entry.limit === limit && entry.offset === offset) {
      // Most recently used last: the Map's first key is the one dropped when it is full.
      this.#entries.delete(compiled.sql);
      this.#entries.set(compiled.sql, entry);
      const original = compiled.parameters;
      const parameters = entry.sources.map((source) => (typeof source === 'number' ? original[source] : source.value));
      // Only statements with parameters: PostgreSQL plans those afresh for every execution under
      // force_custom_plan (the slot fence is checked while planning); one without parameters would
      // run a plan kept from its first execution.
      if (entry.preparedName === undefined && entry.sources.length > 0 && this.#prepare && !this.#stopped && ++entry.uses >= 2 && this.#named < MAX_PREPARED_NAMES) {
        this.#named++;
        entry.preparedName = `kysely_scale_${++namesIssued}`;
      }
      return { plan: entry.plan, shard: { query: entry.query, queryId: compiled.queryId, sql: entry.sql, parameters }, preparedName: entry.preparedName };
    }
    const plan = planScatter(node, this.#options);
    const traced = compiled.sql.length > MAX_SQL_LENGTH ? undefined : this.#trace(compiled, plan);
    if (traced === undefined) return { plan, shard: new PostgresQueryCompiler().compileQuery(plan.shardNode, compiled.queryId) };
    const { shard, sources } = traced;
    if (entry === undefined && this.#entries.size >= MAX_ENTRIES) this.#entries.delete(this.#entries.keys().next().value!);
    // Remembered without this call's values (its query and plan's shard node are only read for their shape).
    const query = new WithoutValues().transformNode(plan.shardNode) as SelectQueryNode;
    const kept = Object.freeze({ ...plan, shardNode: query });
    this.#entries.set(compiled.sql, { uses: 1, preparedName: undefined, limit, offset, plan: kept, sql: shard.sql, query, sources: Object.freeze(sources) });
    return { plan, shard };
  }

  /**
   * Compiles the shard statement and traces each of its parameters to the original's; `undefined`
   * when the original does not compile to `compiled` again, a parameter cannot be traced, or one
   * value node fills two parameters of the original (`const v = sql\`${x}\`` used twice): a later
   * tree with the same text may hold two different values there, so tracing by node would be wrong.
   */
  #trace(compiled: CompiledQuery, plan: ScatterPlan): { shard: CompiledQuery; sources: ParameterSource[] } | undefined {
    const originalCompiler = new TracingCompiler();
    const again = originalCompiler.compileQuery(compiled.query, compiled.queryId);
    if (again.sql !== compiled.sql || originalCompiler.origins.length !== compiled.parameters.length) return undefined;
    // Where each value node's parameters start (a list's items follow its first).
    const starts = new Map<OperationNode, number>();
    for (const [i, origin] of originalCompiler.origins.entries()) {
      if (origin.index !== 0) continue;
      if (starts.has(origin.node)) return undefined;
      starts.set(origin.node, i);
    }
    const shardCompiler = new TracingCompiler();
    const shard = shardCompiler.compileQuery(plan.shardNode, compiled.queryId);
    if (shardCompiler.origins.length !== shard.parameters.length) return undefined;
    // The plan's own LIMIT (n + m) is the one value node of the shard statement the original does not have.
    const planLimit = plan.shardNode.limit?.limit;
    const sources: ParameterSource[] = [];
    for (const [i, origin] of shardCompiler.origins.entries()) {
      const start = starts.get(origin.node);
      if (start !== undefined) sources.push(start + origin.index);
      else if (origin.node === planLimit) sources.push(Object.freeze({ value: shard.parameters[i] }));
      else return undefined;
    }
    return { shard, sources };
  }
}
