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
  /** Per shard whose position is unknown: the look number at which it became unknown. */
  readonly #unknownAt = new Map<string, number>();
  #looks = 0;

  /** @param saved positions from an earlier {@link toJSON} (shard id → `pg_lsn` text). */
  constructor(saved: Readonly<Record<string, string>> = {}) {
    for (const [shardId, lsn] of Object.entries(saved)) this.#positions.set(shardId, parseLsn(lsn));
  }

  /**
   * Numbers a look at a primary's position about to be sent; pass it with the position to
   * {@link noteWrite} or {@link noteRead}. A position replaces an unknown one only when its look
   * began after the position became unknown (WAL only grows, so it covers the unknown write).
   */
  beginLook(): number {
    return ++this.#looks;
  }

  /**
   * Records a write on `shardId` that is durable at `lsn` (positions only move forward), or
   * {@link UNKNOWN_POSITION} when its position could not be read: reads of that shard then go to
   * its primary, until a later position read from the primary replaces it. With `look` (from
   * {@link beginLook}), only a look begun after the position became unknown replaces it; without,
   * any position does (a caller that writes one statement at a time).
   */
  noteWrite(shardId: string, lsn: bigint, look?: number): void {
    this.#note(shardId, lsn, look, true);
  }

  /**
   * Records a read on `shardId` that saw data up to `lsn` (later reads must not see less). A read
   * never replaces an unknown position, except with the primary's position from a look (see
   * {@link beginLook}) begun after it became unknown: a concurrent read may have seen less.
   */
  noteRead(shardId: string, lsn: bigint, look?: number): void {
    this.#note(shardId, lsn, look, false);
  }

  #note(shardId: string, lsn: bigint, look: number | undefined, write: boolean): void {
    const known = this.#positions.get(shardId);
    if (lsn === UNKNOWN_POSITION) {
      this.#positions.set(shardId, lsn);
      this.#unknownAt.set(shardId, ++this.#looks);
      return;
    }
    if (known === UNKNOWN_POSITION) {
      const covers = look === undefined ? write : look > (this.#unknownAt.get(shardId) ?? 0);
      if (!covers) return;
      this.#unknownAt.delete(shardId);
      this.#positions.set(shardId, lsn);
      return;
    }
    if (known === undefined || lsn > known) this.#positions.set(shardId, lsn);
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
