/**
 * The on-demand replay check of read-your-writes: instead of sending a caller to the primary
 * because a replica's last periodic check was before the caller's write, ask the replica (a few
 * ms apart, one poll shared by every caller waiting on it) until it has replayed the position or
 * the wait's deadline passes.
 */
import { parseLsn } from '../cluster/wal-position';
import type { Cancel, Clock } from '../kernel/clock';
import { keepAliveWhile } from '../kernel/keep-alive';
import type { ReplicaMember } from './replica-member';
import { queryWithin, type CheckPools } from './server-check';

/** Time between two looks at a replica's replay position while callers wait. */
export const REPLAY_POLL_MILLIS = 5;

interface Waiter {
  readonly position: bigint;
  readonly resolve: (reached: boolean) => void;
  readonly cancel: Cancel;
}

/** Waits for one replica to replay positions. */
export class ReplayWaiter {
  readonly #member: ReplicaMember;
  readonly #pools: CheckPools;
  readonly #clock: Clock;
  readonly #queryTimeoutMillis: number;
  readonly #onReplayed: (lsn: bigint) => void;
  readonly #waiters = new Set<Waiter>();
  #polling = false;

  /** @param onReplayed told every position seen (the member's known replay position moves forward with it). */
  constructor(member: ReplicaMember, pools: CheckPools, clock: Clock, queryTimeoutMillis: number, onReplayed: (lsn: bigint) => void) {
    this.#member = member;
    this.#pools = pools;
    this.#clock = clock;
    this.#queryTimeoutMillis = queryTimeoutMillis;
    this.#onReplayed = onReplayed;
  }

  /** Resolves `true` once the replica has replayed `position`, `false` when `waitMillis` pass first or it cannot be asked. */
  wait(position: bigint, waitMillis: number): Promise<boolean> {
    const known = this.#member.replayedTo;
    if (known !== null && known >= position) return Promise.resolve(true);
    if (waitMillis <= 0) return Promise.resolve(false);
    // A caller awaits this: the clock's timers are unref'd, so hold the process until it settles.
    return keepAliveWhile(new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        position,
        resolve,
        cancel: this.#clock.setTimeout(() => this.#settle(waiter, false), waitMillis),
      };
      this.#waiters.add(waiter);
      if (!this.#polling) void this.#poll();
    }));
  }

  async #poll(): Promise<void> {
    this.#polling = true;
    try {
      while (this.#waiters.size > 0) {
        let lsn: bigint;
        try {
          const rows = await queryWithin(this.#pools, this.#clock, this.#member.server, 'select pg_last_wal_replay_lsn()::text as v', this.#queryTimeoutMillis);
          lsn = parseLsn(String(rows[0]?.['v']));
        } catch {
          for (const waiter of [...this.#waiters]) this.#settle(waiter, false);
          return;
        }
        this.#onReplayed(lsn);
        for (const waiter of [...this.#waiters]) if (lsn >= waiter.position) this.#settle(waiter, true);
        if (this.#waiters.size === 0) return;
        await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, REPLAY_POLL_MILLIS));
      }
    } finally {
      this.#polling = false;
    }
  }

  #settle(waiter: Waiter, reached: boolean): void {
    if (!this.#waiters.delete(waiter)) return;
    waiter.cancel();
    waiter.resolve(reached);
  }
}
