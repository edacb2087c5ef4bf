/**
 * The servers one plain read (a statement or a stream) on a shard tries, in order: the replica
 * first chosen; after a failed attempt, another eligible replica not tried yet, else the primary
 * (at once after a standby's refusal or replay conflict, which another standby would repeat,
 * unless the primary is out). Inside a read-your-writes context, before it falls back to the
 * primary it waits briefly, on demand, for a replica that replayed the caller's position (the
 * periodic check may simply predate the caller's write); with the primary unavailable, it fails
 * with a coded, retryable error rather than read stale.
 */
import type { ServerSpec, Shard } from '../../cluster/topology';
import { formatLsn } from '../../cluster/wal-position';
import type { Clock } from '../../kernel/clock';
import type { ReadOutcome } from '../../replication/replica-failover';
import { UNKNOWN_POSITION } from '../../replication/read-your-writes';
import { ReadYourWritesUnavailableError } from '../../replication/replication-errors';
import { ATTR, READ_YOUR_WRITES_WAIT } from './statement-metrics';

/** What a route asks of the replica router. */
export interface ReplicaRouteSource {
  readonly options: { readonly readTimeoutMillis: number; readonly replayWaitMillis: number };
  /** The replica a plain read on `shard` should use (one that replayed `requiredPosition`, when given, and not in `exclude`), or `undefined` for the primary. */
  serverForRead(shard: Shard, requiredPosition?: bigint, exclude?: ReadonlySet<string>): ServerSpec | undefined;
  /** Waits up to `waitMillis` for an otherwise eligible replica to replay `position`. */
  waitForReplay(shard: Shard, position: bigint, waitMillis: number, exclude?: ReadonlySet<string>): Promise<ServerSpec | undefined>;
  /** Whether the shard's primary may take statements. */
  primaryAvailable(shard: Shard): boolean;
}

/** The servers of one read; see the file's opening comment. */
export class ReplicaReadRoute {
  readonly #replicas: ReplicaRouteSource;
  readonly #shard: Shard;
  readonly #required: bigint | undefined;
  readonly #clock: Clock;
  readonly #tried = new Set<string>();
  #next: ServerSpec | undefined;
  #retried = false;
  #onFirst: ((server: ServerSpec) => void) | undefined;

  /**
   * @param required the read-your-writes position the read must see, if any
   * @param first where the read starts (a replica, or the primary when none was eligible)
   * @param clock times read-your-writes waits (for their metric)
   * @param onFirst told which server the first attempt uses (after a read-your-writes wait, the replica that replayed the position)
   */
  constructor(replicas: ReplicaRouteSource, shard: Shard, required: bigint | undefined, first: ServerSpec, clock: Clock, onFirst?: (server: ServerSpec) => void) {
    this.#replicas = replicas;
    this.#shard = shard;
    this.#required = required;
    this.#clock = clock;
    this.#next = first === shard.primary ? undefined : first;
    this.#onFirst = onFirst;
  }

  /** Whether an attempt on a replica failed already (a read on the primary is then a retry). */
  get retried(): boolean {
    return this.#retried;
  }

  /** The replica to try now, or `undefined` for the primary. Throws {@link ReadYourWritesUnavailableError} when no server may serve the read. */
  next(): Promise<ServerSpec | undefined> {
    const onFirst = this.#onFirst;
    if (onFirst === undefined) return this.#choose();
    this.#onFirst = undefined;
    return this.#choose().then((server) => {
      onFirst(server ?? this.#shard.primary);
      return server;
    });
  }

  async #choose(): Promise<ServerSpec | undefined> {
    const replicas = this.#replicas;
    const shard = this.#shard;
    const required = this.#required;
    let server = this.#next;
    if (server === undefined && required === UNKNOWN_POSITION) {
      // No replica can confirm a position nobody knows: the primary at once, without a wait.
      if (!replicas.primaryAvailable(shard)) {
        throw new ReadYourWritesUnavailableError(`The caller's position on shard "${shard.id}" is unknown (it could not be read after a write) and the shard's primary is unavailable: the read was not served stale. Retry.`, { shardId: shard.id, requiredPosition: 'unknown' });
      }
      return undefined;
    }
    if (server === undefined && required !== undefined) {
      const available = replicas.primaryAvailable(shard);
      const wait = available ? replicas.options.replayWaitMillis : replicas.options.readTimeoutMillis;
      const started = this.#clock.monotonicNow();
      server = await replicas.waitForReplay(shard, required, wait, this.#tried);
      if (READ_YOUR_WRITES_WAIT.enabled) {
        const outcome = server !== undefined ? 'replica' : available ? 'primary' : 'unavailable';
        READ_YOUR_WRITES_WAIT.record((this.#clock.monotonicNow() - started) / 1000, { [ATTR.shardId]: shard.id, [ATTR.outcome]: outcome });
      }
      if (server === undefined && !available) {
        throw new ReadYourWritesUnavailableError(
          `No replica of shard "${shard.id}" confirmed the caller's position ${formatLsn(required)} within ${wait} ms, and the shard's primary is unavailable: the read was not served stale. Retry.`,
          { shardId: shard.id, requiredPosition: formatLsn(required) },
        );
      }
    }
    if (server !== undefined) this.#tried.add(server.url);
    return server;
  }

  /** Whether the next attempt is on a replica (after {@link primaryFailed} or {@link failed}). */
  get replicaNext(): boolean {
    return this.#next !== undefined;
  }

  /** After the primary could not answer the read (it went down): a replica that may serve it next, if any. */
  primaryFailed(): void {
    this.#retried = true;
    this.#next = this.#replicas.serverForRead(this.#shard, this.#required, this.#tried);
  }

  /** After an attempt on a replica failed with `outcome` (a failure of the replica, not the statement's own error). */
  failed(outcome: Exclude<ReadOutcome, 'ok' | 'statement'>): void {
    const replicas = this.#replicas;
    this.#retried = true;
    // A conflict would repeat on another standby; a passed deadline may be the statement's own
    // slowness, and another replica would only pass it too and leave rotation: both go to the primary.
    this.#next = (outcome === 'conflict' || outcome === 'deadline') && replicas.primaryAvailable(this.#shard) ? undefined : replicas.serverForRead(this.#shard, this.#required, this.#tried);
  }
}
