import type { ShardKeyValue } from '../../cluster/shard-key';

/**
 * What a successful write changed, emitted by the ShardedDialect after the statement succeeded
 * (outside a transaction) or after the transaction committed. The cache subscribes to these to
 * invalidate query results tagged with the table.
 */
export interface WriteEvent {
  /** The statement kind. `raw` for raw SQL that was routed explicitly and may have written. */
  readonly kind: 'insert' | 'update' | 'delete' | 'raw';
  /** The written table as named in the query, without schema (`orders`); `null` when unknown (raw SQL). */
  readonly table: string | null;
  /** The shard the statement ran on. */
  readonly shardId: string;
  /** Shard keys the statement named, when the router saw them; `null` when it did not (e.g. a scatter update). */
  readonly keys: readonly ShardKeyValue[] | null;
}

/** Receives the write events of one statement or one committed transaction. Must not throw. */
export type WriteListener = (events: readonly WriteEvent[]) => void;
