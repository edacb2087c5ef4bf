/**
 * What every phase of a move needs: the catalog, the move store, one mover session per shard, the
 * options, and where progress goes.
 */
import type { Client } from 'pg';
import type { Clock } from '../../kernel/clock';
import type { Topology } from '../../cluster/topology';
import type { OperatorLockBody, TopologyCatalog } from '../topology-catalog';
import type { MoveStore } from './move-store';
import type { BatchPhase, MoveBatch, MoveRecord, UnshardedPhase } from './move-record';
import { openShardSession, withShardSession, type ShardSession, type ShardSessionOptions } from './shard-session';
import { bindEpoch, CommandEpoch, type EpochSource } from './mover-epoch';
import { MoveFailedError } from './mover-errors';
import { PACE_SLICE_MILLIS, type ScanPace } from './scan-pacer';
import { withDeadline } from '../../kernel/deadline';
import { SHARD_DEADLINE_DEFAULTS } from './shard-deadlines';

/** A load probe that does not connect and answer in this time counts as saturated (this slow). */
export const PROBE_DEADLINE_MILLIS = 1000;

/** One progress report; the CLI draws a bar on a terminal and prints one JSON line per second otherwise. */
export interface MoveProgress {
  readonly moveId: number;
  readonly batch: number;
  readonly batches: number;
  readonly source: string;
  readonly target: string;
  /** A batch's phase, or the phase of a drain's unsharded step (`unsharded-copied`, …; reported as the last batch). */
  readonly phase: BatchPhase | `unsharded-${UnshardedPhase}` | 'done';
  readonly rowsCopied: number;
  readonly rowsTotal: number;
  /** Change-log entries waiting to be applied (catch-up lag). */
  readonly lag?: number;
  /** During the clean-up (phase `published`): the source's rows of the moved slots deleted so far (of `rowsCopied`). */
  readonly rowsCleaned?: number;
}

/** Tuning of a move. */
export interface MoveTuning {
  /** Copy and clean-up throttle. @default undefined (as fast as the servers go) */
  readonly maxRowsPerSecond?: number | undefined;
  /** How long a fence may stay up; past it the shard lifts it by itself (a dead mover's fence expires). @default 15000 */
  readonly fenceTimeoutMillis: number;
  /** How long to wait for transactions older than the fence (or the capture) to end before giving up this attempt. @default 5000 */
  readonly drainTimeoutMillis: number;
  /** Catch up until at most this many change-log entries wait, then fence. @default 500 */
  readonly catchUpLagEntries: number;
  /** Attempts at a fenced cutover before the move stops (resume tries again). @default 3 */
  readonly cutoverAttempts: number;
  /** How long to wait for replicas of the source and target to replay a cutover before publishing. @default 5000 */
  readonly replicaWaitMillis: number;
  /** Largest batch, in slots. @default 1024 */
  readonly batchSlots: number;
  /**
   * The mover's duty cycle (gh-ost's nice ratio): after each slice of scanning, copying or deleting
   * (about 3 ms), it pauses this many times as long as the slice took, so the shards keep CPU for
   * the app's statements. 1 = busy at most half of the time; 0 = no pauses (fastest, hardest on
   * the app); 3 = a quarter of the time; at most 100. Applies to the copy, catch-up, verification
   * and clean-up.
   * @default 1
   */
  readonly niceRatio: number;
  /**
   * After each slice's pause the mover times `select 1` on the batch's two shards; while that takes
   * longer than this (the servers are saturated by other work), it keeps waiting, doubling the
   * wait, up to 1 s more per slice, the probes' own time included (so a move on a saturated
   * cluster still progresses, slowly). A probe that cannot connect or answer in time counts as
   * slow. 0 = no probe.
   * @default 3
   */
  readonly probeSlowMillis: number;
  /**
   * How often the mover checks that its operator lock's catalog session still answers (`select 1`
   * under the catalog's statement deadline). A lock lost where no error can reach the mover (the
   * catalog's host died, a dropped path) is noticed at the next check, and the mover stops at its
   * next step: shorter finds it sooner, at one catalog round trip per check.
   * @default 2000
   */
  readonly lockHeartbeatMillis: number;
  /** Wait after a publish before the source's clean-up starts, so routers retrying at the cutover do not compete with its scan. @default 500 */
  readonly cleanupDelayMillis: number;
  /**
   * How long any statement of the mover (and each range of a paged scan, each COPY of a catch-up)
   * may go without an answer before its shard is probed from a fresh connection: a shard that does
   * not answer the probe either (frozen, cut off), or whose session's backend is gone or idle (the
   * path to it dropped), fails the move with `E_MOVE_FAILED` naming it (resume once it answers); a
   * backend at work (a delete of a key with millions of rows, triggers at a COPY's end) is let
   * finish, however long; one waiting for a lock past 5 s fails the move naming who keeps it.
   * @default 30000
   */
  readonly statementTimeoutMillis: number;
  /**
   * The same for a COPY (a table read in one statement: partitioned, inherited, another storage
   * method; the target's side of a table's copy, its end included): the shard is probed once it
   * sent nothing, or took none of what it is sent, for this long while the mover waits on it; time
   * the mover holds the stream back (throttle, pacing) does not count. @default 60000
   */
  readonly copyIdleTimeoutMillis: number;
}

/** Defaults of {@link MoveTuning}. */
export const MOVE_TUNING_DEFAULTS: MoveTuning = Object.freeze({
  fenceTimeoutMillis: 15_000,
  drainTimeoutMillis: 5_000,
  catchUpLagEntries: 500,
  cutoverAttempts: 3,
  replicaWaitMillis: 5_000,
  batchSlots: 1024,
  cleanupDelayMillis: 500,
  lockHeartbeatMillis: 2000,
  niceRatio: 1,
  probeSlowMillis: 3,
  ...SHARD_DEADLINE_DEFAULTS,
});

/**
 * Points of a batch where {@link PhaseHook} is called: before each phase's work; in the cutover when
 * the fence is raised (`fencing`), when older transactions ended (`fenced`), when the source
 * switched, just before the target shows the slots (`showing`, after the move's claim and a lock
 * check; a fresh cutover sends its claim beside raising the fence, just after `claiming`) and just before the publish is sent (`publishing`, after the move's guarded save); when a
 * cutover interrupted in this process is about to be reverted (`reverting`, after the lock was
 * confirmed); during clean-up.
 */
export type HookPoint = BatchPhase | 'claiming' | 'fencing' | 'fenced' | 'switched' | 'showing' | 'publishing' | 'reverting' | 'cleaning' | UnshardedHookPoint;

/**
 * Points of a drain's unsharded step (the hook's batch is then a stand-in with index
 * `batches.length` and no slots): before its guard is installed, when its fence is up and older
 * transactions ended, once the tables are copied and verified, once the source switched, once the
 * new holder is published, and before the source's copies are removed.
 */
export type UnshardedHookPoint = 'unsharded-planned' | 'unsharded-fenced' | 'unsharded-copied' | 'unsharded-switched' | 'unsharded-published' | 'unsharded-cleaning';

/** A test hook: called at each {@link HookPoint} of a batch (crash tests kill the process there). */
export type PhaseHook = (batch: MoveBatch, point: HookPoint) => void | Promise<void>;

/** The state shared by the phases of one move. */
export class MoveContext {
  readonly #sessions = new Map<string, Promise<ShardSession>>();
  readonly #extra: ShardSession[] = [];
  readonly #probes = new Map<string, Promise<ShardSession>>();
  /** This command's fencing token on the shards (`mover-epoch.ts`); none for a command without the operator lock. */
  readonly #epoch: CommandEpoch | undefined;
  readonly #stopped: AbortSignal;
  #rowsCopied = 0;

  constructor(
    readonly catalog: TopologyCatalog,
    readonly store: MoveStore,
    readonly move: MoveRecord,
    readonly tuning: MoveTuning,
    readonly clock: Clock,
    readonly report: (progress: MoveProgress) => void,
    readonly hook: PhaseHook | undefined,
    readonly lost: AbortSignal,
    /** Proves the operator lock held now (see {@link OperatorLockBody}); fails with `E_MOVE_FAILED` otherwise. */
    readonly confirmLock: () => Promise<void> = async () => undefined,
    /** The command's epoch from the operator lock (drawn when the command first opens a session of a shard): every change of a session of this context is checked against the shard's. */
    epoch?: EpochSource,
  ) {
    this.#epoch = epoch === undefined ? undefined : new CommandEpoch(epoch);
    // Aborted with the lock-lost error once the lock is lost: the move's long streams (copies,
    // scans, catch-up passes, clean-up) stop at once, since nothing they do could commit any more.
    const stop = new AbortController();
    this.#stopped = stop.signal;
    const onLost = (): void => stop.abort(this.#lockLost());
    if (lost.aborted) onLost();
    else lost.addEventListener('abort', onLost, { once: true });
  }

  /** The command took the operator lock again (a back-out after its lock was lost): its changes carry that lock's epoch from now on, raising each shard again. */
  renewEpoch(epoch: EpochSource): void {
    this.#epoch?.renew(epoch);
  }

  /**
   * Raises `shardId`'s epoch through `client` before anything of the shard is read: a command
   * decides from what it reads there (cutoverState, sourceSwitched, the unsharded step's state), so
   * a command that lost its lock must change nothing there after this one read it (review 72).
   */
  async #raise(shardId: string, client: Client): Promise<Client> {
    await this.#epoch?.raised(shardId, client);
    return client;
  }

  /** A mover session opened for this context: bound to the command's epoch. */
  #bound(shardId: string, session: ShardSession): ShardSession {
    if (this.#epoch !== undefined) bindEpoch(session.client, shardId, this.#epoch);
    return session;
  }

  /** Runs `fn` on a fresh session of `shardId` (bound to the command's epoch, the shard raised), closed afterwards. */
  withFreshSession<T>(shardId: string, topology: Topology, fn: (client: Client) => Promise<T>): Promise<T> {
    return withShardSession(
      primaryUrl(topology, shardId),
      async (client) => {
        if (this.#epoch !== undefined) bindEpoch(client, shardId, this.#epoch);
        return fn(await this.#raise(shardId, client));
      },
      this.#owner(shardId),
    );
  }

  /** Rows this run copied: each table copy it finished counts (one started over counts again); a resume does not count the earlier runs'. */
  get rowsCopied(): number {
    return this.#rowsCopied;
  }

  /** Counts `rows` of a table copy this run finished. */
  countCopied(rows: number): void {
    this.#rowsCopied += rows;
  }

  /** The catalog's latest topology (every phase re-reads it: the map may have moved on). */
  async topology(): Promise<Topology> {
    const latest = await this.catalog.latest();
    if (latest === undefined) throw new MoveFailedError('The catalog holds no topology.', { moveId: this.move.id });
    return latest;
  }

  /** The mover's session on `shardId`'s primary (opened once per move), the shard's epoch raised to the command's. */
  async session(shardId: string, topology: Topology): Promise<Client> {
    let pending = this.#sessions.get(shardId);
    if (pending === undefined) {
      const opening = openShardSession(primaryUrl(topology, shardId), undefined, this.#owner(shardId)).then((s) => this.#bound(shardId, s));
      pending = opening;
      this.#sessions.set(shardId, opening);
      // A session that failed to open, or was dropped (a failed scan), is never handed out again.
      const forget = (): void => {
        if (this.#sessions.get(shardId) === opening) this.#sessions.delete(shardId);
      };
      opening.then((s) => s.client.once('end', forget), forget);
    }
    return this.#raise(shardId, (await pending).client);
  }

  /** A second session on `shardId` (a COPY pipe needs one of its own; the shard raised), closed with the context. */
  async extraSession(shardId: string, topology: Topology): Promise<Client> {
    const session = this.#bound(shardId, await openShardSession(primaryUrl(topology, shardId), undefined, this.#owner(shardId)));
    this.#extra.push(session);
    return this.#raise(shardId, session.client);
  }

  /** A session's owner: its shard and the move's statement deadlines. */
  #owner(shardId: string): ShardSessionOptions {
    const { statementTimeoutMillis, copyIdleTimeoutMillis } = this.tuning;
    return { shard: shardId, deadlines: { statementTimeoutMillis, copyIdleTimeoutMillis }, clock: this.clock };
  }

  /** Stops with an error (`E_MOVE_FAILED`, `context.reason` `lock-lost`) when the operator lock was lost (another operator may now act). */
  checkLock(): void {
    if (this.lost.aborted) throw this.#lockLost();
  }

  #lockLost(): MoveFailedError {
    return new MoveFailedError('The operator lock was lost (its catalog session ended or stopped answering); stopping before changing anything else.', { moveId: this.move.id, reason: 'lock-lost' });
  }

  /** How the move's scans, copies and deletes on `shardIds` are paced ({@link MoveTuning.niceRatio}, {@link MoveTuning.probeSlowMillis}). */
  pace(shardIds: readonly string[], topology: Topology): ScanPace {
    return {
      clock: this.clock,
      niceRatio: this.tuning.niceRatio,
      sliceMillis: PACE_SLICE_MILLIS,
      probeSlowMillis: this.tuning.probeSlowMillis,
      signal: this.#stopped,
      // probeSlowMillis 0: no probe (only the nice-ratio pauses).
      ...(this.tuning.probeSlowMillis > 0 ? { probe: (deadlineMillis = PROBE_DEADLINE_MILLIS) => this.#probe(shardIds, topology, deadlineMillis) } : {}),
    };
  }

  /** The slowest round trip of `select 1` over `shardIds`, on probe sessions of their own (never busy with the move's work), within `deadlineMillis` in all. */
  async #probe(shardIds: readonly string[], topology: Topology, deadlineMillis: number): Promise<number> {
    const budget = Math.min(PROBE_DEADLINE_MILLIS, deadlineMillis);
    const started = this.clock.monotonicNow();
    let slowest = 0;
    for (const id of shardIds) {
      const left = budget - (this.clock.monotonicNow() - started);
      const took = left > 0 ? await this.#probeShard(id, topology, left) : undefined;
      if (took === undefined) return budget;
      slowest = Math.max(slowest, took);
    }
    return slowest;
  }

  /**
   * One shard's round trip, or undefined when the probe cannot connect or answer in
   * `deadlineMillis` (refused connections and a full server are load too); the session is then
   * dropped, never left open, and the next probe opens a new one.
   */
  async #probeShard(id: string, topology: Topology, deadlineMillis: number): Promise<number | undefined> {
    const started = this.clock.monotonicNow();
    try {
      let session = this.#probes.get(id);
      if (session === undefined) {
        session = openShardSession(primaryUrl(topology, id), PROBE_DEADLINE_MILLIS);
        this.#probes.set(id, session);
      }
      await withDeadline(
        session.then((s) => s.client.query('select 1')),
        deadlineMillis,
        "the mover's load probe",
        { clock: this.clock, onLate: () => this.#dropProbe(id) },
      );
      return this.clock.monotonicNow() - started;
    } catch {
      this.#dropProbe(id);
      return undefined;
    }
  }

  #dropProbe(id: string): void {
    const session = this.#probes.get(id);
    this.#probes.delete(id);
    session?.then((s) => s.destroy(), () => undefined);
  }

  /** Waits `millis` on the context's clock. */
  pause(millis: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimeout(resolve, millis));
  }

  async close(): Promise<void> {
    const sessions = await Promise.allSettled([...this.#sessions.values()]);
    await Promise.all(sessions.map((s) => (s.status === 'fulfilled' ? s.value.close() : undefined)));
    await Promise.all(this.#extra.map((s) => s.close()));
    const probes = await Promise.allSettled([...this.#probes.values()]);
    await Promise.all(probes.map((s) => (s.status === 'fulfilled' ? s.value.close() : undefined)));
    this.#sessions.clear();
    this.#probes.clear();
  }
}

/** The primary URL of `shardId` in `topology`; a shard the topology does not hold fails the move. */
function primaryUrl(topology: Topology, shardId: string): string {
  const shard = topology.shardById(shardId);
  if (shard === undefined) throw new MoveFailedError(`Shard "${shardId}" is not in topology version ${topology.version}.`, { shardId });
  return shard.primary.url;
}
