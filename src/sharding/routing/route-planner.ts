import type { InsertQueryNode, OperationNode, RootOperationNode, SelectQueryNode } from 'kysely';
import { ErrorCodes } from '../../kernel/errors';
import { RoutingError } from '../sharding-errors';
import { withInsertRows, withListSubset, withReturnedKey } from './node-rewrite';
import { analyzeQuery, type QueryAnalysis, type ScopeAnalysis } from './query-analysis';
import type { RouteHint } from './route-hint';
import type { Shard, Topology } from '../../cluster/topology';
import { encodeShardKey } from '../../cluster/shard-key';
import { undeclaredTable } from './table-rules';
import type { RoutePart, RoutePlan, RoutingRules } from './route-plan';
import { leanSelect, planOnOnlyShard, writtenTable } from './one-shard-plan';

export type { KeylessPolicy } from './table-rules';
export type { RoutePart, RoutePlan, RoutingRules, SpreadPlan } from './route-plan';
export { planMayWrite } from './route-plan';

/**
 * Decides where a statement runs. Throws {@link RoutingError} when it cannot be routed safely.
 *
 * `lean`: the caller needs only where the statement runs, not what it names (no replica choice
 * and no span or metric depends on the plan's table and keys). With one shard a plain SELECT then
 * skips the analysis of its tree, the larger part of a point read's routing cost, and comes back
 * with `table` and `keys` worked out only when read.
 */
export function planRoute(
  root: RootOperationNode,
  hint: RouteHint | undefined,
  topology: Topology,
  rules: RoutingRules,
  lean = false,
): RoutePlan {
  if (topology.shards.length === 1 && hint?.kind !== 'shard') {
    return lean && root.kind === 'SelectQueryNode' ? leanSelect(root as SelectQueryNode, topology.shards[0]!, rules) : planOnOnlyShard(root, topology.shards[0]!, rules);
  }
  const analysis = analyzeQuery(root, rules);
  const plan = choosePlan(root, analysis, hint, topology, rules);
  const root0 = analysis.scopes[0];
  // withShard(id) is an explicit override of everything the query says; every other plan is checked.
  if (hint?.kind !== 'shard' && (analysis.scopes.length > 1 || root0?.keyWrites !== undefined)) checkScopes(plan, analysis, topology, hint !== undefined);
  // Any end modifier is taken as a lock (FOR UPDATE, FOR SHARE, …): reading it on a replica would fail.
  const locks = root.kind === 'SelectQueryNode' && ((root as SelectQueryNode).endModifiers?.length ?? 0) > 0;
  const nested = analysis.nestedWrites.length > 0;
  if (!locks && !nested) return plan;
  return { ...plan, ...(nested ? { nestedWrites: analysis.nestedWrites } : {}), ...(locks ? { primaryOnly: true as const } : {}) };
}

function choosePlan(
  root: RootOperationNode,
  analysis: QueryAnalysis,
  hint: RouteHint | undefined,
  topology: Topology,
  rules: RoutingRules,
): RoutePlan {
  const statement = analysis.statement;
  const table = writtenTable(analysis);

  if (hint?.kind === 'shard') return { kind: 'single', statement, table, shard: shardById(topology, hint.shardId), keys: null };
  const hintShard = hint?.kind === 'key' ? topology.shardForKey(hint.key) : undefined;
  const hintKeys = hint?.kind === 'key' ? [hint.key] : null;

  if (statement === 'ddl') {
    return hintShard !== undefined
      ? { kind: 'single', statement, table: null, shard: hintShard, keys: null }
      : { kind: 'broadcast', statement, table: null, shards: topology.shards };
  }
  if (statement === 'raw' || statement === 'merge') {
    if (hintShard !== undefined) return { kind: 'single', statement, table, shard: hintShard, keys: hintKeys };
    throw new RoutingError(
      ErrorCodes.NO_SHARD_KEY,
      `${statement === 'raw' ? 'Raw SQL' : 'A MERGE statement'} cannot be routed from its text: run it through db.withPlugin(withShardKey(key)) or db.withPlugin(withShard(id)); ` +
        `a CompiledQuery (db.executeQuery) is never seen by plugins: target it with db.executeQuery(onShardKey(compiled, key)) or onShard(compiled, id).`,
      { statement },
    );
  }

  const scopes = analysis.scopes;
  // The common case, one scope on one sharded table, needs none of the checks below.
  if (scopes.length === 1 && analysis.insert === undefined && scopes[0]!.unshardedTables.length === 0 && scopes[0]!.shardedTables.length === 1) {
    return planKeyed(root, analysis, topology, rules, hintShard, table);
  }
  const sharded = new Set<string>();
  const unsharded = new Set<string>();
  for (const scope of scopes) {
    for (const t of scope.unshardedTables) if (!rules.allowsUnsharded(t)) throw undeclaredTable(t, topology.shards.length, rules.unshardedShardId);
    for (const t of scope.shardedTables) sharded.add(t);
    for (const t of scope.unshardedTables) unsharded.add(t);
    if (scope.unlinkedTables.length > 0) {
      throw new RoutingError(
        ErrorCodes.UNROUTABLE_QUERY,
        `Sharded tables ${list(scope.shardedTables)} are joined without equality on their shard keys, so their rows may live on different shards: join them on the shard key columns.`,
        { tables: scope.shardedTables },
      );
    }
  }
  if (sharded.size > 0 && unsharded.size > 0) {
    throw new RoutingError(
      ErrorCodes.UNROUTABLE_QUERY,
      `The query mixes sharded tables ${list([...sharded])} with unsharded tables ${list([...unsharded])}, which live only on shard "${rules.unshardedShardId}": query them separately.`,
      { sharded: [...sharded], unsharded: [...unsharded] },
    );
  }
  if (sharded.size === 0) {
    // Unsharded tables live on one shard whatever key a hint names (every shard has the empty table).
    return { kind: 'single', statement, table, shard: shardById(topology, rules.unshardedShardId), keys: null };
  }
  if (analysis.insert !== undefined) return planInsert(root as InsertQueryNode, analysis, topology, hintShard, table);
  return planKeyed(root, analysis, topology, rules, hintShard, table);
}

function planInsert(root: InsertQueryNode, analysis: QueryAnalysis, topology: Topology, hintShard: Shard | undefined, table: string | null): RoutePlan {
  const insert = analysis.insert!;
  if (insert.problem !== undefined) {
    if (hintShard !== undefined) return { kind: 'single', statement: 'insert', table, shard: hintShard, keys: null };
    throw new RoutingError(ErrorCodes.NO_SHARD_KEY, `Cannot route the insert into sharded table "${insert.table}": ${insert.problem}. Set the shard key in every row, or target one shard with withShardKey(key).`, { table: insert.table });
  }
  const groups = groupByShard(insert.rowKeys, topology);
  if (hintShard !== undefined) assertOnlyShard(groups, hintShard, insert.table);
  if (groups.size === 1) {
    const [shard, group] = groups.entries().next().value as [Shard, Group];
    return { kind: 'single', statement: 'insert', table, shard, keys: group.keys };
  }
  // RETURNING rows come back in VALUES order: each part's rows return their key, so the merge can
  // place them even when a shard skipped some (ON CONFLICT); a part whose skipped row could be one
  // of two equal keys on either side of another shard's row runs as one statement per run.
  const returning = root.returning !== undefined;
  const parts: RoutePart[] = [];
  for (const [shard, group] of groups) {
    for (const run of returning && root.onConflict !== undefined ? unambiguousRuns(group) : [group]) {
      const node = withInsertRows(root, run.indexes);
      parts.push(Object.freeze(returning
        ? { shard, node: withReturnedKey(node, insert.column), keys: run.keys, rowIndexes: run.indexes, returnsKey: true as const }
        : { shard, node, keys: run.keys, rowIndexes: run.indexes }));
    }
  }
  return { kind: 'split', statement: 'insert', table, parts };
}

/**
 * A shard's rows as statements whose returned rows can be placed exactly by their keys: the whole
 * group when no key repeats across its runs (rows with consecutive VALUES positions), else one
 * group per run (a returned key then matches within a run, where its place is unambiguous).
 */
function unambiguousRuns(group: Group): readonly Group[] {
  const runs: Group[] = [];
  group.indexes.forEach((at, i) => {
    const run = runs[runs.length - 1];
    if (run !== undefined && run.indexes[run.indexes.length - 1] === at - 1) {
      run.indexes.push(at);
      run.keys.push(group.keys[i]);
    } else {
      runs.push({ indexes: [at], keys: [group.keys[i]] });
    }
  });
  if (runs.length === 1) return [group];
  const runOf = new Map<string, number>();
  for (const [r, run] of runs.entries()) {
    for (const key of run.keys) {
      const text = encodeShardKey(key);
      if ((runOf.get(text) ?? r) !== r) return runs;
      runOf.set(text, r);
    }
  }
  return [group];
}

function planKeyed(
  root: RootOperationNode,
  analysis: QueryAnalysis,
  topology: Topology,
  rules: RoutingRules,
  hintShard: Shard | undefined,
  table: string | null,
): RoutePlan {
  const statement = analysis.statement;
  const scopes = analysis.scopes;
  const shardedScopes = scopes.length === 1 ? scopes : scopes.filter((s) => s.shardedTables.length > 0);
  const keyless = shardedScopes.length === 1 ? (shardedScopes[0]!.keys === null ? shardedScopes : NO_SCOPES) : shardedScopes.filter((s) => s.keys === null);

  if (keyless.length > 0) {
    if (hintShard !== undefined) return { kind: 'single', statement, table, shard: hintShard, keys: null };
    const only = shardedScopes.length === 1 && analysis.scopes[0] === keyless[0] ? keyless[0] : undefined;
    const policyTable = keyless[0]!.shardedTables[0]!;
    // Reads scatter by the table's policy; keyless writes (update, delete on every shard) need their own opt-in.
    const write = statement !== 'select';
    const allowed = (t: string): boolean => {
      const policy = rules.keylessPolicyOf(t);
      return (write ? policy.write : policy.read) === 'scatter';
    };
    if (only !== undefined && only.shardedTables.every(allowed)) {
      return { kind: 'scatter', statement, table, shards: topology.shards };
    }
    const keyColumn = rules.shardKeyOf(policyTable, undefined)?.column ?? 'its shard key';
    const optIn = write
      ? `; to run keyless ${statement}s on every shard (not atomic across shards), set keylessPolicy { ${policyTable}: { read: 'scatter', write: 'scatter' } }.`
      : `; to run it on every shard and merge, set keylessPolicy { ${policyTable}: 'scatter' }.`;
    throw new RoutingError(
      ErrorCodes.NO_SHARD_KEY,
      `${write ? `Keyless ${statement} of` : 'Query on'} sharded table "${policyTable}" names no shard key: add a condition on ${keyColumn} (= or in), or target one shard with db.withPlugin(withShardKey(key)) or withShard(id)` +
        (only === undefined ? '.' : optIn),
      { table: policyTable, statement },
    );
  }

  if (shardedScopes.length > 1) {
    // Subqueries on sharded tables run where the outer query runs: every scope must pin that one shard.
    const shards = new Set<Shard>();
    for (const scope of shardedScopes) for (const key of scope.keys!) shards.add(topology.shardForKey(key));
    if (hintShard !== undefined) shards.add(hintShard);
    if (shards.size !== 1) {
      throw new RoutingError(
        ErrorCodes.UNROUTABLE_QUERY,
        `The query's subqueries on sharded tables pin ${shards.size} different shards; a statement with subqueries must name keys of one shard only (or split it).`,
        { shards: [...shards].map((s) => s.id) },
      );
    }
    const shard = shards.values().next().value as Shard;
    return { kind: 'single', statement, table, shard, keys: shardedScopes[0]!.keys };
  }

  const scope = shardedScopes[0]!;
  if (scope.keys!.length === 1 && hintShard === undefined) {
    return { kind: 'single', statement, table, shard: topology.shardForKey(scope.keys![0]), keys: scope.keys };
  }
  const groups = groupByShard(scope.keys!, topology);
  if (hintShard !== undefined) assertOnlyShard(groups, hintShard, scope.shardedTables[0]!);
  if (groups.size <= 1) {
    const entry = groups.entries().next().value as [Shard, Group] | undefined;
    // `in ()` with no keys matches nothing: any shard answers it correctly.
    return { kind: 'single', statement, table, shard: entry?.[0] ?? topology.shards[0]!, keys: entry?.[1].keys ?? [] };
  }
  const keyList: OperationNode | undefined = scope.keyList;
  const parts = [...groups].map(([shard, group]) =>
    Object.freeze({
      shard,
      // Without a single `in` list (e.g. `a = 1 or a = 2`) the unchanged statement is still correct on each shard.
      node: keyList === undefined ? root : withListSubset(root, keyList, group.indexes),
      keys: group.keys,
    }),
  );
  return { kind: 'split', statement, table, parts };
}

const NO_SCOPES: readonly ScopeAnalysis[] = Object.freeze([]);

/**
 * Checks what the plan's root decision cannot see: subqueries and CTEs on sharded tables must pin
 * keys of the one shard the statement runs on (a hint included), and a statement that writes a
 * new shard key may only keep the row on that shard.
 */
function checkScopes(plan: RoutePlan, analysis: QueryAnalysis, topology: Topology, hinted: boolean): void {
  const targets = planTargets(plan);
  analysis.scopes.forEach((scope, index) => {
    if (scope.shardedTables.length === 0) return;
    const table = scope.shardedTables[0]!;
    if (scope.keyWrites === 'expression') {
      throw new RoutingError(ErrorCodes.UNROUTABLE_QUERY, `The statement sets the shard key of "${table}" to an expression: the row could move to another shard. Delete and re-insert it instead.`, { table });
    }
    const pinned = index === 0 ? [] : scope.keys;
    if (index > 0 && pinned === null && (!hinted || plan.kind !== 'single')) {
      throw new RoutingError(ErrorCodes.NO_SHARD_KEY, `A subquery on sharded table "${table}" names no shard key, so it would see only part of the rows: add a condition on its key.`, { table });
    }
    for (const key of [...(pinned ?? []), ...(scope.keyWrites ?? [])]) {
      const shard = topology.shardForKey(key);
      if (targets.length !== 1 || targets[0]!.id !== shard.id) {
        throw new RoutingError(
          ErrorCodes.UNROUTABLE_QUERY,
          scope.keyWrites !== undefined && (scope.keyWrites as readonly unknown[]).includes(key)
            ? `The statement moves a "${table}" row to shard key ${String(key)}, which belongs to shard "${shard.id}", not the shard the row is on: delete and re-insert it instead.`
            : `A subquery on "${table}" names a key of shard "${shard.id}" but the statement runs on ${targets.map((t) => `"${t.id}"`).join(', ')}: a statement's subqueries must pin the same single shard.`,
          { table, shard: shard.id },
        );
      }
    }
  });
}

/** The shards a plan runs on. */
export function planTargets(plan: RoutePlan): readonly Shard[] {
  switch (plan.kind) {
    case 'single':
      return [plan.shard];
    case 'split':
      return plan.parts.map((p) => p.shard);
    case 'scatter':
    case 'broadcast':
      return plan.shards;
  }
}

interface Group {
  readonly keys: unknown[];
  readonly indexes: number[];
}

function groupByShard(keys: readonly unknown[], topology: Topology): Map<Shard, Group> {
  const groups = new Map<Shard, Group>();
  keys.forEach((key, index) => {
    const shard = topology.shardForKey(key);
    let group = groups.get(shard);
    if (group === undefined) groups.set(shard, (group = { keys: [], indexes: [] }));
    group.keys.push(key);
    group.indexes.push(index);
  });
  return groups;
}

function assertOnlyShard(groups: ReadonlyMap<Shard, Group>, hintShard: Shard, table: string): void {
  for (const shard of groups.keys()) {
    if (shard !== hintShard) {
      throw new RoutingError(
        ErrorCodes.UNROUTABLE_QUERY,
        `withShardKey() targets shard "${hintShard.id}" but the query on "${table}" names keys of shard "${shard.id}": remove the hint or the conflicting keys.`,
        { table, hinted: hintShard.id, named: shard.id },
      );
    }
  }
}

function shardById(topology: Topology, id: string): Shard {
  const shard = topology.shardById(id);
  if (shard === undefined) {
    throw new RoutingError(ErrorCodes.UNKNOWN_SHARD, `No shard "${id}" in topology version ${topology.version}; known shards: ${list(topology.shards.map((s) => s.id))}.`, { shardId: id });
  }
  return shard;
}

function list(names: readonly string[]): string {
  return names.map((n) => `"${n}"`).join(', ');
}
