/**
 * The path of one plain single-shard read that may use a replica: every attempt on a replica runs
 * under a client-side deadline (`readTimeoutMillis`, checkout included); a replica that cannot be
 * reached or passes the deadline leaves rotation at once and the read runs again on another
 * eligible replica, else on the primary. Inside a read-your-writes context, a read whose position
 * no replica is known to have replayed first waits (briefly, on demand) for one that does, and
 * every read notes how far the data it saw reached, so the context's later reads never go back in
 * time across servers (monotonic reads). With the primary down, such a read fails with a coded,
 * retryable error rather than reading stale.
 */
import { CompiledQuery, type QueryResult } from 'kysely';
import type { ServerSpec, Shard } from '../../cluster/topology';
import { formatLsn, parseLsn, PRIMARY_WAL_END_SQL } from '../../cluster/wal-position';
import type { Clock } from '../../kernel/clock';
import type { ReadYourWritesContext } from '../../replication/read-your-writes';
import { classifyReadFailure, type ReadOutcome } from '../../replication/replica-failover';
import { ReadYourWritesUnavailableError } from '../../replication/replication-errors';
import type { HeldClients } from './held-clients';

/** What the read path asks of the replica router (`src/replication`). */
export interface ReplicaChooser {
  readonly options: { readonly readTimeoutMillis: number; readonly replayWaitMillis: number };
  /** The replica a plain read on `shard` should use (one that replayed `requiredPosition`, when given, and not in `exclude`), or `undefined` for the primary. */
  serverForRead(shard: Shard, requiredPosition?: bigint, exclude?: ReadonlySet<string>): ServerSpec | undefined;
  /** Starts a read on a replica; its end tells the replica's progress and the strategy how it went. */
  startRead(shard: Shard, server: ServerSpec): { end(outcome: ReadOutcome): void };
  /** Takes a replica out of read service at once. */
  markFailed(shard: Shard, server: ServerSpec, problem: string): void;
  /** Waits up to `waitMillis` for an otherwise eligible replica to replay `position`. */
  waitForReplay(shard: Shard, position: bigint, waitMillis: number, exclude?: ReadonlySet<string>): Promise<ServerSpec | undefined>;
  /** A fresh look at a replica's replay position. */
  noteReplayed(shard: Shard, server: ServerSpec, lsn: bigint): void;
  /** An upper bound of the primary's position now, when known. */
  primaryPositionBound(shard: Shard): bigint | undefined;
  /** Whether the shard's primary may take statements. */
  primaryAvailable(shard: Shard): boolean;
}

/** What the read path needs of the dialect's runtime. */
export interface ReplicaReadRuntime {
  /** Present when plain reads may use replicas. */
  readonly replicas: ReplicaChooser | undefined;
  /** Times replica reads and their deadlines. */
  readonly clock: Clock;
  /** The read-your-writes context of the running async call, if any. */
  readonly readYourWritesContext: ReadYourWritesContext | undefined;
}

type Attempt<R> = { readonly result: QueryResult<R> } | { readonly outcome: ReadOutcome; readonly error: unknown };

const REPLAY_SQL = CompiledQuery.raw('select pg_last_wal_replay_lsn()::text as lsn');
const PRIMARY_POSITION_SQL = CompiledQuery.raw(`select ${PRIMARY_WAL_END_SQL} as lsn`);

/** Runs plain reads for one connection; see the file's opening comment. */
export class ReplicaReadPath {
  readonly #runtime: ReplicaReadRuntime;
  readonly #clients: HeldClients;
  readonly #onRetry: (shard: Shard, compiled: CompiledQuery) => void;

  /** @param onRetry told when a read runs again on the primary because a replica could not answer it. */
  constructor(runtime: ReplicaReadRuntime, clients: HeldClients, onRetry: (shard: Shard, compiled: CompiledQuery) => void) {
    this.#runtime = runtime;
    this.#clients = clients;
    this.#onRetry = onRetry;
  }

  /** A plain read on `shard`, starting on `first` (a replica, or the primary when none was eligible). */
  async read<R>(replicas: ReplicaChooser, first: ServerSpec, shard: Shard, compiled: CompiledQuery): Promise<QueryResult<R>> {
    const context = this.#runtime.readYourWritesContext;
    const required = context?.requiredPosition(shard.id);
    const tried = new Set<string>();
    let server: ServerSpec | undefined = first === shard.primary ? undefined : first;
    let retried = false;
    for (;;) {
      if (server === undefined && required !== undefined) {
        // On demand: the periodic check may simply predate the caller's write.
        const available = replicas.primaryAvailable(shard);
        const wait = available ? replicas.options.replayWaitMillis : replicas.options.readTimeoutMillis;
        server = await replicas.waitForReplay(shard, required, wait, tried);
        if (server === undefined && !available) {
          throw new ReadYourWritesUnavailableError(
            `No replica of shard "${shard.id}" confirmed the caller's position ${formatLsn(required)} within ${wait} ms, and the shard's primary is unavailable: the read was not served stale. Retry.`,
            { shardId: shard.id, requiredPosition: formatLsn(required) },
          );
        }
      }
      if (server === undefined) {
        if (retried) this.#onRetry(shard, compiled);
        return this.#onPrimary<R>(shard, compiled, context);
      }
      tried.add(server.url);
      const attempt = await this.#attempt<R>(replicas, server, shard, compiled);
      if ('result' in attempt) {
        if (context !== undefined) await this.#noteReplica(replicas, server, shard, context);
        return attempt.result;
      }
      if (attempt.outcome === 'statement') throw attempt.error;
      retried = true;
      // A standby's refusal or replay conflict goes to the primary (another standby would refuse too), unless the primary is out.
      server = attempt.outcome === 'conflict' && replicas.primaryAvailable(shard) ? undefined : replicas.serverForRead(shard, required, tried);
    }
  }

  /** One attempt on a replica under the read deadline. */
  #attempt<R>(replicas: ReplicaChooser, server: ServerSpec, shard: Shard, compiled: CompiledQuery): Promise<Attempt<R>> {
    const timeoutMillis = replicas.options.readTimeoutMillis;
    const read = replicas.startRead(shard, server);
    return new Promise<Attempt<R>>((resolve) => {
      let settled = false;
      const cancel = this.#runtime.clock.setTimeout(() => {
        if (settled) return;
        settled = true;
        read.end('deadline');
        const error = new Error(`no answer to a read within readTimeoutMillis (${timeoutMillis} ms)`);
        replicas.markFailed(shard, server, error.message);
        this.#clients.drop(server.url); // its client may never answer: closed, never reused
        resolve({ outcome: 'deadline', error });
      }, timeoutMillis);
      this.#clients.run<R>(server, compiled).then(
        (result) => {
          if (settled) return;
          settled = true;
          cancel();
          read.end('ok');
          resolve({ result });
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          cancel();
          const outcome = classifyReadFailure(error);
          read.end(outcome);
          if (outcome === 'unreachable') replicas.markFailed(shard, server, (error as Error)?.message ?? String(error));
          if (outcome === 'unreachable' || outcome === 'busy') this.#clients.drop(server.url);
          resolve({ outcome, error });
        },
      );
    });
  }

  /** The read on the primary; in a context, notes how far the primary was after it (later reads never go back before it). */
  async #onPrimary<R>(shard: Shard, compiled: CompiledQuery, context: ReadYourWritesContext | undefined): Promise<QueryResult<R>> {
    const result = await this.#clients.run<R>(shard.primary, compiled);
    if (context !== undefined) {
      try {
        const { rows } = await this.#clients.run<{ lsn: string }>(shard.primary, PRIMARY_POSITION_SQL);
        context.noteRead(shard.id, parseLsn(rows[0]!.lsn));
      } catch {
        context.noteRead(shard.id, UNKNOWN_POSITION);
      }
    }
    return result;
  }

  /** After a replica read in a context: the replica's replay position then bounds what the read saw. */
  async #noteReplica(replicas: ReplicaChooser, server: ServerSpec, shard: Shard, context: ReadYourWritesContext): Promise<void> {
    let lsn: bigint | undefined;
    try {
      const { rows } = await this.#withDeadline(this.#clients.run<{ lsn: string }>(server, REPLAY_SQL), replicas.options.readTimeoutMillis);
      lsn = parseLsn(rows[0]!.lsn);
      replicas.noteReplayed(shard, server, lsn);
    } catch {
      // Not answered: what the primary can have reached by now bounds what the read saw.
      this.#clients.drop(server.url);
      lsn = replicas.primaryPositionBound(shard) ?? UNKNOWN_POSITION;
    }
    context.noteRead(shard.id, lsn);
  }

  #withDeadline<T>(promise: Promise<T>, millis: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const cancel = this.#runtime.clock.setTimeout(() => reject(new Error(`no answer within ${millis} ms`)), millis);
      promise.then(
        (value) => {
          cancel();
          resolve(value);
        },
        (error: unknown) => {
          cancel();
          reject(error as Error);
        },
      );
    });
  }
}

/** Beyond any real WAL position: a context whose position is unknown reads that shard's primary. */
export const UNKNOWN_POSITION = 1n << 64n;
