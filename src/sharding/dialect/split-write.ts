/**
 * A write split over several shards (a multi-row insert, an update or delete of a key list, a
 * keyless or `or`-keyed write sent unchanged to every shard), one statement per shard, outside a
 * transaction: affected rows summed, RETURNING rows in VALUES order for inserts. A part narrowed to
 * its own keys (an insert's rows, a key list's subset) that a shard refused for a slot move (its
 * fence: nothing was written there) while other parts committed runs again, once, after the
 * topology reaches the version the shard asked for, on its keys' new owners: the caller sees
 * success as for a statement on one shard. A statement sent unchanged to several shards cannot be
 * narrowed to what the refusing shard lost (running it again would write the committed shards
 * twice), so it fails with {@link PartialWriteError}, as does any split write with another failure.
 * (Running such parts in a transaction per shard until all ran was tried and dropped: two of them
 * touching the same rows on two shards wait on each other forever, each server seeing only half of
 * the cycle.)
 */
import { InsertQueryNode, type CompiledQuery, type QueryResult, type RootOperationNode } from 'kysely';
import type { Topology } from '../../cluster/topology';
import { encodeShardKey } from '../../cluster/shard-key';
import { catchUpTopology, type TopologySource } from '../../cluster/topology-catch-up';
import { fenceRefusalOf } from '../../cluster/topology-fence';
import type { PoolClientLike } from '../../cluster/server-pools';
import { systemClock } from '../../kernel/clock';
import { planRoute, type RoutePart, type RoutingRules, type SpreadPlan } from '../routing/route-planner';
import { RETURNED_KEY, withInsertRows } from '../routing/node-rewrite';
import { PartialWriteError } from '../sharding-errors';
import { runOn, type HeldClients } from './held-clients';
import type { ReplicaReads } from './replica-read';
import type { WriteEvents } from './write-events';
import { refreshHeldSessions } from './fence-retry';

/** What a split write needs of the dialect's runtime (a `ShardedRuntime` fits). */
export interface SplitWriteRuntime {
  /** Compiles a rewritten node with the original query's id. */
  compile(node: RootOperationNode, original: CompiledQuery): CompiledQuery;
  readonly writes: WriteEvents;
  readonly topology: Topology;
  setTopology(topology: Topology): void;
  readonly rules: RoutingRules;
  readonly topologySource: TopologySource | undefined;
  readonly fenceWaitMillis: number;
  retag(client: PoolClientLike): Promise<void>;
}

/** One part and how it ended. */
interface PartOutcome {
  readonly part: RoutePart;
  readonly outcome: PromiseSettledResult<QueryResult<unknown>>;
}

/** Runs `parts` of `plan` and combines them; see the module comment. */
export async function runSplitWrite(runtime: SplitWriteRuntime, clients: HeldClients, reads: ReplicaReads, compiled: CompiledQuery, plan: SpreadPlan, parts: readonly RoutePart[], inSession: boolean): Promise<QueryResult<unknown>> {
  const run = async (list: readonly RoutePart[]): Promise<PartOutcome[]> => {
    const settled = await Promise.allSettled(
      list.map(async (part) => {
        const query = part.node === compiled.query ? compiled : runtime.compile(part.node, compiled);
        const client = await clients.client(reads.serverFor(part.shard, plan, inSession));
        return runOn<unknown>(client, query.sql, query.parameters);
      }),
    );
    return settled.map((outcome, i) => ({ part: list[i]!, outcome }));
  };
  let outcomes = await run(parts);
  const refused = outcomes.filter((o) => isRetryableRefusal(o, compiled));
  // All refused: the connection's retry runs the whole statement again. Another failure: nothing to save.
  // Not in a session: its statements may run inside a transaction the caller began with raw SQL, which the refusal aborted.
  if (!inSession && refused.length > 0 && outcomes.some((o) => o.outcome.status === 'fulfilled') && outcomes.every((o) => o.outcome.status === 'fulfilled' || isRetryableRefusal(o, compiled))) {
    const again = await reroute(runtime, clients, compiled, refused);
    if (again !== undefined) outcomes = [...outcomes.filter((o) => !refused.includes(o)), ...(await run(again))];
  }
  return combine(runtime, reads, plan, outcomes);
}

/** A part its shard refused for a slot move, narrowed to keys that can be routed again. */
function isRetryableRefusal(o: PartOutcome, compiled: CompiledQuery): boolean {
  return o.outcome.status === 'rejected' && o.part.keys !== null && o.part.node !== compiled.query && fenceRefusalOf(o.outcome.reason) !== undefined;
}

/**
 * The refused parts routed by the topology their shards asked for, or `undefined` when it did not
 * come within `fenceWaitMillis` (or a held session did not take it): they then stay failed.
 */
async function reroute(runtime: SplitWriteRuntime, clients: HeldClients, compiled: CompiledQuery, refused: readonly PartOutcome[]): Promise<RoutePart[] | undefined> {
  const source = runtime.topologySource;
  if (source === undefined) return undefined;
  let version = runtime.topology.version + 1;
  for (const { outcome } of refused) version = Math.max(version, fenceRefusalOf((outcome as PromiseRejectedResult).reason)?.requiredVersion ?? 0);
  // Real time on purpose, as in retryAfterRefusal: a test's ManualClock must not hold a router here.
  if (!(await catchUpTopology(runtime, source, version, { waitMillis: runtime.fenceWaitMillis, clock: systemClock }))) return undefined;
  try {
    // Re-tagged, not given back: a stream of this connection may still read through a held client.
    await refreshHeldSessions(runtime, clients, true);
  } catch {
    return undefined;
  }
  return refused.flatMap(({ part }) => partsOnNewOwners(runtime, compiled, part));
}

/**
 * `part` planned again. An insert part is re-planned from the original statement narrowed to its
 * rows (so a hidden key column is added once), and its sub-parts' row positions are mapped back
 * to the original VALUES list.
 */
function partsOnNewOwners(runtime: SplitWriteRuntime, compiled: CompiledQuery, part: RoutePart): RoutePart[] {
  const insertRows = part.rowIndexes;
  const node = insertRows !== undefined && InsertQueryNode.is(compiled.query) ? withInsertRows(compiled.query, insertRows) : part.node;
  const plan = planRoute(node, undefined, runtime.topology, runtime.rules, true);
  if (plan.kind === 'single') return [{ ...part, shard: plan.shard }];
  if (plan.kind !== 'split') return [part]; // not expected for a part with keys: it fails again as it did
  return plan.parts.map((sub) => (insertRows === undefined || sub.rowIndexes === undefined ? sub : { ...sub, rowIndexes: sub.rowIndexes.map((i) => insertRows[i]!) }));
}

async function combine(runtime: SplitWriteRuntime, reads: ReplicaReads, plan: SpreadPlan, outcomes: readonly PartOutcome[]): Promise<QueryResult<unknown>> {
  const committed: string[] = [];
  const failed: string[] = [];
  // VALUES positions of an insert's rows that were not written (every failed part of a split insert knows its rows).
  const failedRows: number[] | undefined = outcomes.every((o) => o.part.rowIndexes !== undefined) ? [] : undefined;
  const positions: Promise<void>[] = [];
  let firstError: unknown;
  for (const { part, outcome } of outcomes) {
    if (outcome.status === 'fulfilled') {
      // A shard may run several parts (a split insert's runs): each id once.
      if (!committed.includes(part.shard.id)) committed.push(part.shard.id);
      runtime.writes.record(plan, part.shard, part.keys, null);
      if (reads.tracksWrites) positions.push(reads.noteWritePosition(part.shard));
    } else {
      if (!failed.includes(part.shard.id)) failed.push(part.shard.id);
      failedRows?.push(...part.rowIndexes!);
      firstError ??= outcome.reason;
    }
  }
  await Promise.all(positions);
  if (failed.length > 0) {
    // All failed: nothing was written, PostgreSQL's error is the whole story.
    if (committed.length === 0) throw firstError;
    throw new PartialWriteError(
      `This ${plan.statement} committed on ${quoted(committed)} and failed on ${quoted(failed)} (${(firstError as Error).message}). Writes split over shards outside a transaction are not atomic.`,
      firstError,
      { committed, failed, ...(failedRows === undefined ? {} : { failedRows: failedRows.sort((a, b) => a - b) }) },
    );
  }
  const results = outcomes.map((o) => (o.outcome as PromiseFulfilledResult<QueryResult<unknown>>).value);
  if (plan.kind === 'broadcast') return results[0]!;
  return mergeWriteResults(outcomes.map((o) => o.part), results);
}

/**
 * Sums affected rows and concatenates RETURNING rows. A split insert's rows come back in VALUES
 * order: a part that returned one row per inserted row is placed by position; one that returned
 * fewer (a shard skipped rows: ON CONFLICT DO NOTHING) is placed by the keys its rows returned.
 */
function mergeWriteResults(parts: readonly RoutePart[], results: readonly QueryResult<unknown>[]): QueryResult<unknown> {
  let affected: bigint | undefined;
  for (const r of results) if (r.numAffectedRows !== undefined) affected = (affected ?? 0n) + r.numAffectedRows;
  const placed = parts.every((p) => p.rowIndexes !== undefined) ? placeInValuesOrder(parts, results) : undefined;
  const rows = placed ?? results.flatMap((r, i) => (parts[i]!.returnsKey === true ? r.rows.map(withoutReturnedKey) : r.rows));
  return affected === undefined ? { rows } : { numAffectedRows: affected, rows };
}

/** The rows of a split insert's parts in VALUES order; `undefined` if a returned row matches no row of its part. */
function placeInValuesOrder(parts: readonly RoutePart[], results: readonly QueryResult<unknown>[]): unknown[] | undefined {
  const slots: unknown[] = [];
  const filled: boolean[] = [];
  for (const [i, part] of parts.entries()) {
    const rows = results[i]!.rows;
    const indexes = part.rowIndexes!;
    if (rows.length === indexes.length) {
      rows.forEach((row, j) => {
        slots[indexes[j]!] = part.returnsKey === true ? withoutReturnedKey(row) : row;
        filled[indexes[j]!] = true;
      });
      continue;
    }
    if (part.returnsKey !== true || part.keys === null) return undefined;
    // Returned rows keep VALUES order and skip some: each takes the next row of its part with its key.
    let next = 0;
    for (const row of rows) {
      const key = encodeShardKey((row as Record<string, unknown>)[RETURNED_KEY]);
      while (next < indexes.length && encodeShardKey(part.keys[next]) !== key) next++;
      if (next === indexes.length) return undefined;
      slots[indexes[next]!] = withoutReturnedKey(row);
      filled[indexes[next]!] = true;
      next++;
    }
  }
  const out: unknown[] = [];
  for (let at = 0; at < filled.length; at++) if (filled[at] === true) out.push(slots[at]);
  return out;
}

function withoutReturnedKey(row: unknown): unknown {
  const { [RETURNED_KEY]: _key, ...rest } = row as Record<string, unknown>;
  return rest;
}

function quoted(ids: readonly string[]): string {
  return ids.map((id) => `"${id}"`).join(', ');
}

