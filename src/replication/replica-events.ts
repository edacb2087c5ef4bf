/**
 * Replica events: one for every change of a replica's or a primary's state, with the shard, the
 * server (password redacted) and the reason, so a misconfigured or failing replica is visible
 * without polling `replicaStatus()`.
 */
import type { ErrorCode } from '../kernel/errors';

/**
 * The state of a replica:
 * - `unchecked`: not checked yet;
 * - `serving`: proven to stream from its shard's primary, healthy, within the lag bounds;
 * - `lagging`: healthy, but beyond `maxLagBytes` or `maxLagMillis` (it serves again once back within them);
 * - `unverified`: answers, but has not proven its identity yet (its primary's identity not replayed, or the primary never seen);
 * - `refused`: proven NOT to stream from this shard's primary (another shard's standby, not a standby): code `E_REPLICA_REFUSED`;
 * - `unreachable`: its last check failed or timed out;
 * - `ejected`: a read on it failed to connect or passed its deadline; out of rotation until a later check succeeds;
 * - `promoted`: it became a primary of this shard (a promoted standby); writes follow it.
 */
export type ReplicaState = 'unchecked' | 'serving' | 'lagging' | 'unverified' | 'refused' | 'unreachable' | 'ejected' | 'promoted';

/**
 * The state of a shard's primary as the checks see it:
 * - `unchecked`: not checked yet; `up`: answers as a primary;
 * - `down`: its check or a connection failed (writes fail fast with `E_PRIMARY_UNAVAILABLE`);
 * - `demoted`: it is a standby, or on an older timeline than a promoted standby of its shard (never written to).
 */
export type PrimaryState = 'unchecked' | 'up' | 'down' | 'demoted';

/** One change of state. */
export type ReplicaEvent =
  | {
      readonly role: 'replica';
      readonly shardId: string;
      /** The server's URL, password redacted. */
      readonly server: string;
      readonly from: ReplicaState;
      readonly to: ReplicaState;
      /** Why, in words that name the shard (and the other shard, for a standby of another shard). */
      readonly reason: string;
      /** The stable code of a refusal (`E_REPLICA_REFUSED`). */
      readonly code?: ErrorCode;
    }
  | {
      readonly role: 'primary';
      readonly shardId: string;
      readonly server: string;
      readonly from: PrimaryState;
      readonly to: PrimaryState;
      readonly reason: string;
      readonly code?: ErrorCode;
    };

/** A replica event listener. */
export type ReplicaEventListener = (event: ReplicaEvent) => void;

/** The replica event listeners of one dialect. A listener that throws does not stop the others. */
export class ReplicaEvents {
  readonly #listeners = new Set<ReplicaEventListener>();

  /** Subscribes `listener`; returns the unsubscribe function. */
  subscribe(listener: ReplicaEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(event: ReplicaEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(Object.freeze(event));
      } catch (error) {
        process.emitWarning(`kysely-scale: a replica event listener threw: ${(error as Error)?.message ?? String(error)}`, 'KyselyScaleListenerWarning');
      }
    }
  }
}
