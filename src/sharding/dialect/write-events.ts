/**
 * Write events of a dialect: the listeners `dialect.onWrite()` registered, and the events a
 * successful statement produces from its route plan (the cache invalidates by them).
 */
import type { Shard } from '../../cluster/topology';
import type { StatementKind } from '../routing/query-analysis';
import type { RoutePlan } from '../routing/route-planner';
import type { WriteEvent, WriteListener } from './write-event';

/** The event kind of each statement kind; `null` for statements that write no rows. */
const EVENT_KIND: Readonly<Record<StatementKind, WriteEvent['kind'] | null>> = Object.freeze({
  select: null,
  insert: 'insert',
  update: 'update',
  delete: 'delete',
  // Raw SQL routed explicitly may have written; MERGE writes rows the router cannot name.
  raw: 'raw',
  merge: 'raw',
  ddl: null,
});

/** The write listeners of one dialect. */
export class WriteEvents {
  readonly #listeners = new Set<WriteListener>();

  /** Subscribes `listener`; returns the unsubscribe function. */
  subscribe(listener: WriteListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Records what a successful statement of `plan` on `shard` wrote (`keys`: the shard keys it named,
   * when known): emitted now, or appended to `pending` (a transaction's, emitted after COMMIT).
   * Nothing is built while no one listens.
   */
  record(plan: RoutePlan, shard: Shard, keys: readonly unknown[] | null, pending: WriteEvent[] | null): void {
    if (this.#listeners.size === 0) return;
    const events = writeEventsOf(plan, shard.id, keys);
    if (events.length === 0) return;
    if (pending !== null) pending.push(...events);
    else this.emit(events);
  }

  /** Hands `events` to every listener; a listener that throws does not break the write that already happened. */
  emit(events: readonly WriteEvent[]): void {
    const frozen = Object.freeze([...events]);
    for (const listener of this.#listeners) {
      try {
        listener(frozen);
      } catch {
        // The write succeeded; a failing listener is its own concern.
      }
    }
  }
}

/** The events of a statement of `plan` that succeeded on shard `shardId`, data-modifying CTEs included. */
export function writeEventsOf(plan: RoutePlan, shardId: string, keys: readonly unknown[] | null): WriteEvent[] {
  const events: WriteEvent[] = [];
  const kind = EVENT_KIND[plan.statement];
  if (kind !== null) events.push(Object.freeze({ kind, table: plan.table, shardId, keys: keys as WriteEvent['keys'] }));
  // Data-modifying CTEs (with d as (delete …) select …) write too.
  for (const nested of plan.nestedWrites ?? []) events.push(Object.freeze({ kind: nested.kind, table: nested.table, shardId, keys: null }));
  return events;
}
