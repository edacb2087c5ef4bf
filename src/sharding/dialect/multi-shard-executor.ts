/**
 * Statements over several shards, outside transactions: a SELECT runs on every shard it names and
 * the rows are merged (or streamed through a k-way merge); a write runs its part on each shard,
 * and a write that fails on some shards only is reported with where it committed (not atomic).
 */
import type { CompiledQuery, QueryResult, RootOperationNode } from 'kysely';
import type { ServerSpec, Shard } from '../../cluster/topology';
import type { PoolClientLike } from '../../cluster/server-pools';
import { ErrorCodes } from '../../kernel/errors';
import type { Clock } from '../../kernel/clock';
import { withDeadline } from '../../kernel/deadline';
import type { RoutePart, SpreadPlan } from '../routing/route-planner';
import { planScatter, type ScatterPlanOptions } from '../scatter/scatter-plan';
import { RoutingError } from '../sharding-errors';
import { runOn, type HeldClients, type RowDescription, type ShardStatement } from './held-clients';
import type { ReplicaReads } from './replica-read';
import type { CursorConstructor } from './sharded-dialect-config';
import { ScatterTypeNames, type DescribedShard } from './scatter-types';
import { FieldTypes } from '../scatter/scatter-field-types';
import { ScatterStatements } from './scatter-statements';
import { runSplitWrite, type SplitWriteRuntime } from './split-write';

type Row = Record<string, unknown>;


/** How long a stream waits for a second pooled connection for a catalog read. */
const ASIDE_READ_DEADLINE_MILLIS = 5_000;

// The route planner only scatters joins of sharded tables linked by equality on their shard keys,
// whose rows are co-located, so every join that reaches the scatter planner is safe.
const SCATTER_OPTIONS: ScatterPlanOptions = Object.freeze({ isJoinSafe: () => true });

/** What the executor needs of the dialect's runtime. */
export interface MultiShardRuntime extends SplitWriteRuntime {
  /** The cursor class for streams. */
  cursor(): CursorConstructor;
  /** Whether repeated scatter statements run as prepared statements (`ShardedDialectConfig.prepareScatterStatements`). */
  readonly prepareScatterStatements: boolean;
  /** A pooled client of `server` of its own (a catalog read while the connection's clients hold open cursors). */
  acquire(server: ServerSpec): Promise<PoolClientLike>;
  readonly clock: Clock;
}

/** Runs one connection's statements that span shards, over its held clients. */
export class MultiShardExecutor {
  readonly #runtime: MultiShardRuntime;
  readonly #clients: HeldClients;
  readonly #reads: ReplicaReads;

  constructor(runtime: MultiShardRuntime, clients: HeldClients, reads: ReplicaReads) {
    this.#runtime = runtime;
    this.#clients = clients;
    this.#reads = reads;
  }

  /**
   * Runs `parts` of `plan` (one per shard) and combines the results: a SELECT's rows merged as one
   * database would return them; a write's affected counts summed and RETURNING rows concatenated
   * (in VALUES order for a split insert). `inSession` keeps reads on the primaries.
   */
  execute(compiled: CompiledQuery, plan: SpreadPlan, parts: readonly RoutePart[], inSession: boolean): Promise<QueryResult<unknown>> {
    return plan.statement === 'select' ? this.#scatterRead(compiled, plan, parts, inSession) : this.#splitWrite(compiled, plan, parts, inSession);
  }

  /** Streams a SELECT over several shards through a k-way merge, in chunks of `chunkSize` rows. */
  async *stream(compiled: CompiledQuery, plan: SpreadPlan, parts: readonly RoutePart[], inSession: boolean, chunkSize: number): AsyncGenerator<QueryResult<Row>> {
    if (plan.statement !== 'select' || plan.kind === 'broadcast') {
      throw new RoutingError(ErrorCodes.UNSUPPORTED_SCATTER, `stream() over several shards works for SELECT only; run this ${plan.statement} with execute().`, { statement: plan.statement });
    }
    const { plan: scatter, shard } = statementsOf(this.#runtime).statementFor(compiled);
    if (!scatter.streamable) {
      throw new RoutingError(ErrorCodes.UNSUPPORTED_SCATTER, 'This scatter query (aggregates, GROUP BY or DISTINCT) cannot be streamed: run it with execute(), or add the shard key.', { unsupported: 'stream of a merged scatter' });
    }
    const Cursor = this.#runtime.cursor();
    // Each shard's stream under the read deadline on a replica; one that fails before its first row starts again elsewhere.
    const compileFor = shardStatements(this.#runtime, shard, compiled);
    // Filled as each shard's first rows arrive, before the merge compares them. The connection's
    // clients hold the open cursors, so a catalog read (a user type not seen before) takes a
    // pooled client of its own.
    const types = new FieldTypes();
    const typeNames = typeNamesOf(this.#runtime);
    const streams = parts.map((part) => {
      let description: RowDescription | undefined;
      const query: ShardStatement = { ...compileFor(part), shardOptions: { onRowDescription: (found) => (description = found) } };
      const rows = this.#reads.stream(part.shard, plan, inSession, { compiled: query, observed: plan, Cursor, chunkSize }) as AsyncGenerator<Row[], unknown, number | undefined>;
      return describedFirst(rows, () => typeNames.addTo(types, scatter, { id: part.shard.id, database: part.shard.primary.url, description, read: (catalog) => this.#readAside(part.shard, catalog) }));
    });
    try {
      for await (const rows of scatter.mergeChunks(streams, chunkSize, types)) yield { rows };
    } catch (error) {
      // A label added since the labels were read: the next statement reads them again.
      if (isUnknownEnumLabel(error)) typeNames.forgetUserTypes();
      throw error;
    }
  }

  /**
   * Runs a catalog read on a pooled client of `shard`'s primary that this connection does not hold,
   * waiting at most {@link ASIDE_READ_DEADLINE_MILLIS} for one.
   */
  async #readAside(shard: Shard, query: CompiledQuery): Promise<QueryResult<Row>> {
    const pending = this.#runtime.acquire(shard.primary);
    let client: PoolClientLike;
    try {
      client = await withDeadline(pending, ASIDE_READ_DEADLINE_MILLIS, `a second connection to shard "${shard.id}"`, {
        clock: this.#runtime.clock,
        onLate: () => void pending.then((late) => late.release(), () => undefined),
      });
    } catch (error) {
      throw new RoutingError(
        ErrorCodes.UNSUPPORTED_SCATTER,
        `This ordered stream compares values of a type the dialect has not seen on shard "${shard.id}" yet (an enum); its name and labels are read on a second pooled connection while the stream's cursor holds one, and none came (${(error as Error).message}). Raise pool.max, or run the statement once with execute() first.`,
        { unsupported: 'stream type lookup', shard: shard.id },
      );
    }
    try {
      return await runOn<Row>(client, query.sql, query.parameters);
    } finally {
      client.release();
    }
  }

  async #scatterRead(compiled: CompiledQuery, plan: SpreadPlan, parts: readonly RoutePart[], inSession: boolean): Promise<QueryResult<unknown>> {
    const statements = statementsOf(this.#runtime);
    const { plan: scatter, shard, preparedName } = statements.statementFor(compiled);
    // Every part settles before an error is thrown: Kysely releases the connection on the error,
    // and a client must not go back to its pool while its query still runs.
    // Each part is a plain read of its shard: under the read deadline on a replica, else again elsewhere.
    const compileFor = shardStatements(this.#runtime, shard, compiled);
    // Prepared only outside sessions: a statement that fails inside a transaction aborts it, and a session may DISCARD ALL.
    const name = inSession ? undefined : preparedName;
    const descriptions: (RowDescription | undefined)[] = parts.map(() => undefined);
    // Compiled before any part starts: a part that cannot be planned fails the statement with none running.
    const queries = parts.map(compileFor);
    const rowsPerShard = await allSettledOrThrow(
      parts.map((part, i) => {
        const query = queries[i]!;
        const run = (preparedName: string | undefined): Promise<Row[]> => {
          const statement: ShardStatement = { ...query, shardOptions: { preparedName, onRowDescription: (found) => (descriptions[i] = found) } };
          return this.#reads.run<Row>(part.shard, plan, inSession, statement).then(rowsOf);
        };
        if (name === undefined || query !== shard) return run(undefined);
        return run(name).catch((error: unknown) => {
          const stale = stalePreparedStatement(error);
          if (stale === undefined) throw error;
          // Nothing ran. A schema change: the statement is planned afresh under a new name. A lost
          // statement: connections do not keep them (a pooler in transaction mode), so stop naming.
          if (stale === 'lost') statements.stopPreparing();
          statements.forget(compiled.sql);
          return run(undefined);
        });
      }),
    );
    // The compared values' types come from the row descriptions of the shards that returned rows.
    const described = parts.flatMap((part, i): DescribedShard[] => {
      if (rowsPerShard[i]!.length === 0) return [];
      return [{ id: part.shard.id, database: part.shard.primary.url, description: descriptions[i], read: (query) => this.#reads.run<Row>(part.shard, plan, inSession, query) }];
    });
    const typeNames = typeNamesOf(this.#runtime);
    const found = typeNames.lookup(scatter, described);
    const types = found instanceof Promise ? await found : found;
    try {
      return { rows: scatter.merge(rowsPerShard, types) };
    } catch (error) {
      // A label added since the labels were read (ALTER TYPE … ADD VALUE): read them again, once.
      if (types === undefined || !isUnknownEnumLabel(error)) throw error;
      return { rows: scatter.merge(rowsPerShard, await typeNames.lookup(scatter, described, true)) };
    }
  }

  #splitWrite(compiled: CompiledQuery, plan: SpreadPlan, parts: readonly RoutePart[], inSession: boolean): Promise<QueryResult<unknown>> {
    return runSplitWrite(this.#runtime, this.#clients, this.#reads, compiled, plan, parts, inSession);
  }
}

const typeNameCaches = new WeakMap<MultiShardRuntime, ScatterTypeNames>();
const statementCaches = new WeakMap<MultiShardRuntime, ScatterStatements>();

/** The dialect's planned scatter statements (one cache per runtime, like its type names). */
function statementsOf(runtime: MultiShardRuntime): ScatterStatements {
  let statements = statementCaches.get(runtime);
  if (statements === undefined) statementCaches.set(runtime, (statements = new ScatterStatements(SCATTER_OPTIONS, runtime.prepareScatterStatements)));
  return statements;
}

function typeNamesOf(runtime: MultiShardRuntime): ScatterTypeNames {
  let names = typeNameCaches.get(runtime);
  if (names === undefined) typeNameCaches.set(runtime, (names = new ScatterTypeNames()));
  return names;
}

/**
 * Errors of a prepared statement that nothing ran under and that running it unnamed may cure:
 * `lost` when the server connection does not have it (26000) or has another under its name
 * (42P05), as behind a pooler that hands a client's statements to different server connections;
 * `changed` when the schema changed under it: its result columns (0A000 "cached plan must not
 * change result type"), or its parameters' types, fixed when it was first parsed (class 42, e.g.
 * 42883 "operator does not exist: st = text" after a text column became an enum). An unnamed run
 * that fails the same way is the statement's own error.
 */
function stalePreparedStatement(error: unknown): 'changed' | 'lost' | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === '26000' || code === '42P05') return 'lost';
  return code === '0A000' || (typeof code === 'string' && code.startsWith('42')) ? 'changed' : undefined;
}

/**
 * `rows` with `onFirst` awaited before its first non-empty chunk is handed over (the chunk the
 * merge first compares); the reader's `next(n)` reaches `rows` unchanged.
 */
async function* describedFirst(rows: AsyncGenerator<Row[], unknown, number | undefined>, onFirst: () => Promise<void>): AsyncGenerator<Row[], void, number | undefined> {
  let wanted: number | undefined;
  let pending = true;
  try {
    for (;;) {
      const next = await rows.next(wanted);
      if (next.done === true) return;
      if (pending && next.value.length > 0) {
        pending = false;
        await onFirst();
      }
      wanted = yield next.value;
    }
  } finally {
    await rows.return(undefined);
  }
}

function rowsOf(result: QueryResult<Row>): Row[] {
  return result.rows;
}

function isUnknownEnumLabel(error: unknown): boolean {
  const unsupported = error instanceof RoutingError ? error.context.unsupported : undefined;
  return typeof unsupported === 'string' && unsupported.endsWith('is not one of its labels');
}

/** The parts of a scatter or broadcast: the unchanged statement on each shard. */
export function partsOnShards(shards: readonly Shard[], node: RootOperationNode): readonly RoutePart[] {
  return shards.map((shard) => ({ shard, node, keys: null }));
}

/**
 * The SELECT each part's shard runs: `shard` (the scatter's statement) for parts that run the
 * unchanged statement (a scatter's, on every shard); the plan's rewrite of its own node otherwise.
 */
function shardStatements(runtime: MultiShardRuntime, shard: CompiledQuery, compiled: CompiledQuery): (part: RoutePart) => CompiledQuery {
  return (part) => (part.node === compiled.query ? shard : runtime.compile(planScatter(part.node, SCATTER_OPTIONS).shardNode, compiled));
}

/** The values of `promises` once all settled; the first rejection's reason if any failed. */
async function allSettledOrThrow<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((o) => (o as PromiseFulfilledResult<T>).value);
}
