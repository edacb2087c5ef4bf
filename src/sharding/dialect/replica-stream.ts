/**
 * A streamed plain read (`.stream()`) of one shard that may use a replica. Every round trip on a
 * replica runs under the read deadline (`readTimeoutMillis`): the checkout with the cursor's
 * first chunk, each further chunk, and closing the cursor when the consumer stops early; the time
 * the consumer spends between chunks does not count. A replica that passes the deadline or cannot
 * be reached leaves rotation at once and its client is closed (never its cursor: closing waits
 * for an answer the server may never send). Then:
 *
 * - before the stream handed over any row, it starts again on another eligible replica or the
 *   primary, as a read does ({@link ReplicaReadRoute}): the consumer sees nothing of it;
 * - after, it fails with {@link ReplicaStreamInterruptedError} (retryable): going on elsewhere
 *   would repeat or miss rows.
 *
 * Inside a read-your-writes context, a stream notes how far the data it read reached once it ends
 * (monotonic reads), as a read does. Cursors on the primary run as before, without this deadline.
 */
import type { CompiledQuery } from 'kysely';
import type { ServerSpec, Shard } from '../../cluster/topology';
import { redactText } from '../../kernel/redact';
import { ejects, type ReadOutcome } from '../../replication/replica-failover';
import { ReplicaStreamInterruptedError } from '../../replication/replication-errors';
import type { RoutePlan } from '../routing/route-planner';
import { cursorRows, openCursor, type HeldClients, type OpenCursor } from './held-clients';
import { attemptOnReplica, clientDropped } from './replica-attempt';
import { ReplicaReadRoute } from './replica-read-route';
import type { ReplicaChooser, ReplicaReadRuntime } from './replica-read-path';
import type { CursorConstructor } from './sharded-dialect-config';

/** What a stream needs of the read path besides the runtime and the held clients. */
export interface ReplicaStreamHooks {
  /** Told when a stream starts again on the primary because a replica could not serve it. */
  onRetry(shard: Shard, observed: RoutePlan): void;
  /** Inside a read-your-writes context, notes how far the data read from `server` (`undefined`: the primary) reached. */
  noteSeen(replicas: ReplicaChooser, shard: Shard, server: ServerSpec | undefined): Promise<void>;
}

/** The statement a stream runs and how: its cursor class and chunk size, and the statement telemetry knows. */
export interface StreamStatement {
  readonly compiled: CompiledQuery;
  /** The plan of the statement the telemetry observes (the caller's, when `compiled` is one shard's part of it). */
  readonly observed: RoutePlan;
  readonly Cursor: CursorConstructor;
  readonly chunkSize: number;
}

/** How a stream on one replica stopped short, and how many rows it had handed over by then. */
interface Stopped {
  readonly outcome: Exclude<ReadOutcome, 'ok'>;
  readonly error: unknown;
  readonly rowsHandedOver: number;
}

/** Streams plain reads for one connection; see the file's opening comment. */
export class ReplicaStreamPath {
  readonly #runtime: ReplicaReadRuntime;
  readonly #clients: HeldClients;
  readonly #hooks: ReplicaStreamHooks;

  constructor(runtime: ReplicaReadRuntime, clients: HeldClients, hooks: ReplicaStreamHooks) {
    this.#runtime = runtime;
    this.#clients = clients;
    this.#hooks = hooks;
  }

  /**
   * The rows of `statement` on `shard` in chunks, starting on `first` (a replica, or the primary when none was eligible).
   * `onFirst` is told the server of the first attempt (a read-your-writes wait may move it from the primary to a replica).
   */
  async *stream(replicas: ReplicaChooser, first: ServerSpec, shard: Shard, statement: StreamStatement, onFirst?: (server: ServerSpec) => void): AsyncGenerator<unknown[]> {
    const { compiled, Cursor, chunkSize } = statement;
    const context = this.#runtime.readYourWritesContext;
    const route = new ReplicaReadRoute(replicas, shard, context?.requiredPosition(shard.id), first, this.#runtime.clock, onFirst);
    // Where the rows came from, to note once the stream ends well or the consumer stops (not on failure).
    let seen: { readonly server: ServerSpec | undefined } | undefined;
    let failed = false;
    try {
      for (;;) {
        const server = await route.next();
        if (server === undefined) {
          if (route.retried) this.#hooks.onRetry(shard, statement.observed);
          seen = { server: undefined };
          yield* cursorRows(Cursor, await this.#clients.client(shard.primary), compiled, chunkSize);
          return;
        }
        seen = { server };
        const stopped = yield* this.#onReplica(replicas, server, shard, statement);
        if (stopped === undefined) return;
        seen = undefined;
        if (stopped.outcome === 'statement') throw stopped.error;
        if (stopped.rowsHandedOver > 0) throw interrupted(shard, server, stopped);
        route.failed(stopped.outcome);
      }
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      if (context !== undefined && !failed && seen !== undefined) await this.#hooks.noteSeen(replicas, shard, seen.server);
    }
  }

  /** The stream on one replica: `undefined` when it ended (or the consumer stopped), else how it stopped short. */
  async *#onReplica(replicas: ReplicaChooser, server: ServerSpec, shard: Shard, statement: StreamStatement): AsyncGenerator<unknown[], Stopped | undefined> {
    const { compiled, Cursor, chunkSize } = statement;
    const attempt = <T>(work: () => Promise<T>, checkout?: () => Promise<unknown>) => attemptOnReplica(this.#runtime.clock, this.#clients, replicas, shard, server, work, checkout);
    // A holder, not a variable: the first step's callback opens it.
    const held: { cursor: OpenCursor | undefined; closable: boolean } = { cursor: undefined, closable: true };
    let rowsHandedOver = 0;
    try {
      let step = await attempt(async () => {
        const cursor = (held.cursor = openCursor(Cursor, await this.#clients.client(server), compiled));
        return cursor.read(chunkSize);
      }, () => this.#clients.client(server));
      for (;;) {
        if (!('value' in step)) {
          if (clientDropped(step.outcome)) held.closable = false;
          return { outcome: step.outcome, error: step.error, rowsHandedOver };
        }
        if (step.value.length === 0) return undefined;
        rowsHandedOver += step.value.length;
        // A merge may ask for fewer rows than a chunk (what it can still use of a LIMIT).
        const wanted: unknown = yield step.value;
        const size = typeof wanted === 'number' && wanted >= 1 ? Math.min(Math.floor(wanted), chunkSize) : chunkSize;
        const cursor = held.cursor!;
        step = await attempt(() => cursor.read(size));
      }
    } finally {
      // Closing waits for the server: under the deadline too (a late one drops the client), never on a client given up.
      const cursor = held.cursor;
      if (cursor !== undefined && held.closable) await attempt(() => cursor.close());
    }
  }
}

/** The error of a stream whose replica failed after it handed over rows: says what happened and what to do. */
function interrupted(shard: Shard, server: ServerSpec, stopped: Stopped): ReplicaStreamInterruptedError {
  const why = redactText(stopped.error instanceof Error ? stopped.error.message : String(stopped.error), [server.url]);
  const rotation = ejects(stopped.outcome) ? '; the replica left rotation' : '';
  return new ReplicaStreamInterruptedError(
    `A stream on shard "${shard.id}" stopped after ${stopped.rowsHandedOver} rows: replica ${server.redactedUrl} failed it (${why})${rotation}. ` +
      'Going on from another server could repeat or miss rows, so nothing more was read. Run the stream again (it starts on another replica or the primary), ' +
      'or stream with withPrimary() to keep it off replicas.',
    { shardId: shard.id, server: server.redactedUrl, rowsHandedOver: stopped.rowsHandedOver },
    stopped.error,
  );
}
