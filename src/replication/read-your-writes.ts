import { formatLsn, parseLsn } from '../cluster/wal-position';

/** Beyond any real WAL position: a caller whose position on a shard is unknown reads that shard's primary. */
export const UNKNOWN_POSITION = 1n << 64n;

/**
 * What one caller (a request, a user session) has written and seen: per shard, the furthest WAL
 * position of its writes there (the primary's position after each) and of its reads (the position
 * the server it read had reached). A read for that caller may use a replica of a shard only once
 * the replica has replayed past that position, so it sees its own writes and never goes back in
 * time across replicas (monotonic reads); until one has, it goes to the primary. Carry it across
 * requests with {@link ReadYourWritesContext.toJSON} and the constructor.
 */
export class ReadYourWritesContext {
  readonly #positions = new Map<string, bigint>();

  /** @param saved positions from an earlier {@link toJSON} (shard id → `pg_lsn` text). */
  constructor(saved: Readonly<Record<string, string>> = {}) {
    for (const [shardId, lsn] of Object.entries(saved)) this.#positions.set(shardId, parseLsn(lsn));
  }

  /**
   * Records a write on `shardId` that is durable at `lsn` (positions only move forward), or
   * {@link UNKNOWN_POSITION} when its position could not be read: reads of that shard then go to
   * its primary, until a later position read from the primary replaces it (WAL only grows, so a
   * position read after the unknown one covers it).
   */
  noteWrite(shardId: string, lsn: bigint): void {
    const known = this.#positions.get(shardId);
    if (known === undefined || lsn > known || (known === UNKNOWN_POSITION && lsn !== UNKNOWN_POSITION)) this.#positions.set(shardId, lsn);
  }

  /** Records a read on `shardId` that saw data up to `lsn` (later reads must not see less). */
  noteRead(shardId: string, lsn: bigint): void {
    this.noteWrite(shardId, lsn);
  }

  /** The position a replica of `shardId` must have replayed to serve this caller; `undefined` when it wrote and read nothing there. */
  requiredPosition(shardId: string): bigint | undefined {
    return this.#positions.get(shardId);
  }

  /** Shard id → `pg_lsn` text, for storing in a session. */
  toJSON(): Record<string, string> {
    return Object.fromEntries([...this.#positions].map(([id, lsn]) => [id, formatLsn(lsn)]));
  }
}
