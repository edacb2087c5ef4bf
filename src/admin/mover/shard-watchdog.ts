/**
 * The deadline of one wait on a shard session (a statement, or a COPY's stream), checked for
 * liveness instead of cut at a duration: when the mover has waited on the shard for the deadline
 * without a sign of progress, the session's backend is probed over the session's probe connection
 * (`shard-liveness.ts`), and
 * - a shard that does not answer the probe, or a backend gone, or idle or waiting on the
 *   connection while the mover waits on it (seen twice), is silent: the wait fails with
 *   {@link ShardSilentError} once the shard showed no sign of life for the deadline;
 * - a backend waiting for a lock fails the wait with {@link ShardLockError} naming who keeps the
 *   lock, once it waited the mover's lock bound (`LOCK_WAIT_MILLIS`; a statement that bounds its own
 *   wait with `lock_timeout` is left to it, and a second more);
 * - a backend at work (a long delete, triggers at the end of a COPY) is let be, and probed again
 *   after another interval: no duration cap on work (the operator can stop the command);
 * - a server that answers the probe with an error (no connection slot, a role's connection limit)
 *   or hides the backend's state is alive: the wait goes on and the backend is probed again after
 *   another interval, but not without bound: once such answers (and no progress, no finding of
 *   work) lasted {@link UNINSPECTED_DEADLINES} times the deadline, the wait fails with
 *   {@link ShardSilentError} (the shard "could not be inspected"; the message names the option
 *   to raise). The session's own backend may take the role's only slot while the path to it
 *   dropped: nothing else would end that wait.
 * A lock wait is timed by the server's count (`pg_locks.waitstart`, so a new wait starts from
 * zero); only a server that keeps none (before PostgreSQL 14) is timed from the first probe that
 * found it waiting.
 * Probes come every `min(deadline, lock bound)` of waiting, so a lock wait is named soon.
 */
import type { Cancel, Clock } from '../../kernel/clock';
import { ShardLockError, ShardSilentError, type DeadlineOption } from './mover-errors';
import { describeFinding, type BackendFinding, type BackendProber } from './shard-liveness';
import { blockersContext, describeBlockers } from './lock-blockers';

/** The session a wait is on. */
export interface WatchedSession {
  readonly shard: string;
  readonly clock: Clock;
  /** How long a statement may wait for a lock (unless it bounds the wait itself). */
  readonly lockWaitMillis: number;
  /** The session's probe connection. */
  readonly prober: BackendProber;
  /** The session's backend pid as its server tells it (`pg_backend_pid()`; undefined before it was read). */
  readonly pid: () => number | undefined;
}

/** One wait on the session. */
export interface WatchedWait {
  /** For errors: `a statement`, `a COPY it writes`, … */
  readonly what: () => string;
  readonly millis: number;
  readonly option: DeadlineOption;
  /**
   * Whether the mover waits on the shard and saw no progress since the last call; undefined: the
   * wait has no measure of progress (a statement), it is always waited on until it settles.
   */
  readonly stalled?: () => boolean;
  /** The statement bounds its own lock wait at this (`lock_timeout`). */
  readonly ownLockTimeoutMillis?: number | undefined;
  /** Called once when the wait failed: drop the session (and the stream), reject with `error`. */
  readonly fail: (error: ShardSilentError | ShardLockError) => void;
}

/** Most time one probe may take to connect and answer. */
export const PROBE_MILLIS = 5000;
/**
 * How many deadlines a wait goes on while every probe is refused or cannot see the backend, with no
 * progress meanwhile: 5, so that a statement that runs a few deadlines long on a server that
 * refuses the probe (the session's own backend at its role's connection limit) still completes,
 * while one whose path dropped stops after 5 × the deadline (2.5 minutes at the default 30 s).
 */
export const UNINSPECTED_DEADLINES = 5;
/** How long after its own `lock_timeout` a statement's lock wait is still left to it. */
const OWN_LOCK_GRACE_MILLIS = 1000;

/** Watches `wait` on `session` until the returned stop is called (when the wait settles). */
export function watchWait(session: WatchedSession, wait: WatchedWait): () => void {
  const { clock } = session;
  const interval = Math.max(10, Math.min(1000, wait.millis / 10));
  const lockLimit = wait.ownLockTimeoutMillis === undefined ? session.lockWaitMillis : wait.ownLockTimeoutMillis + OWN_LOCK_GRACE_MILLIS;
  const probeEvery = Math.min(wait.millis, lockLimit);
  const probeMillis = Math.min(PROBE_MILLIS, wait.millis);
  let stopped = false;
  let cancel: Cancel = () => undefined;
  // The last sign of life: progress, the mover not waiting on the shard, or a probe finding the backend at work.
  let alive = clock.monotonicNow();
  // The last sign of life but a refused probe: progress, the mover not waiting, a finding of work or a lock wait.
  let inspected = alive;
  let nextProbeAt = alive + probeEvery;
  let suspicions = 0;
  // When a probe first found the backend waiting for a lock, for a server that keeps no lock wait start (before PostgreSQL 14).
  let lockSeenAt: number | undefined;

  const schedule = (millis: number): void => {
    if (!stopped) cancel = clock.setTimeout(tick, Math.max(1, millis));
  };
  const fail = (error: ShardSilentError | ShardLockError): void => {
    if (stopped) return;
    stopped = true;
    wait.fail(error);
  };
  const silent = (finding: BackendFinding, pid: number | undefined): true => {
    fail(new ShardSilentError(session.shard, wait.what(), wait.millis, wait.option, pid === undefined ? `it has no backend to ask about` : describeFinding(finding, pid), pid === undefined ? {} : { pid }));
    return true;
  };

  const uninspected = (finding: BackendFinding & { kind: 'refused' }, pid: number, millis: number): true => {
    const text = `${describeFinding(finding, pid)}; the shard could not be inspected for ${Math.round(millis)} ms (${UNINSPECTED_DEADLINES} × ${wait.option}) while the session showed no progress, so the mover gave up: raise ${wait.option} if the shard is only busy`;
    fail(new ShardSilentError(session.shard, wait.what(), wait.millis, wait.option, text, { pid, uninspectedMillis: Math.round(millis) }));
    return true;
  };

  /** Acts on `finding`; true when the wait failed (the session is dropped: its backend is ended too). */
  const decide = (finding: BackendFinding, pid: number): boolean => {
    if (stopped) return false;
    const now = clock.monotonicNow();
    const deadlinePassed = now - alive >= wait.millis;
    switch (finding.kind) {
      case 'refused':
        if (now - inspected >= UNINSPECTED_DEADLINES * wait.millis) return uninspected(finding, pid, now - inspected);
        alive = now;
        suspicions = 0;
        nextProbeAt = now + probeEvery;
        break;
      case 'working':
        alive = now;
        inspected = now;
        suspicions = 0;
        lockSeenAt = undefined;
        nextProbeAt = now + probeEvery;
        break;
      case 'lock': {
        alive = now;
        inspected = now;
        suspicions = 0;
        // The server's count alone when it keeps one: it starts again with each new wait.
        if (finding.waitedMillis !== undefined) lockSeenAt = undefined;
        else lockSeenAt ??= now;
        const waited = finding.waitedMillis ?? now - (lockSeenAt ?? now);
        if (waited >= lockLimit && finding.blockers !== undefined) {
          const table = finding.table ?? finding.lock;
          fail(new ShardLockError(session.shard, wait.what(), table, waited, lockLimit, describeBlockers(finding.blockers), { pid, ...blockersContext(finding.blockers) }, finding.lock));
          return true;
        }
        nextProbeAt = now + Math.max(interval, Math.min(probeEvery, lockLimit - waited));
        break;
      }
      case 'unreachable':
      case 'gone':
        if (deadlinePassed) return silent(finding, pid);
        nextProbeAt = alive + wait.millis;
        break;
      case 'idle':
      case 'client':
        // Seen twice, an interval apart: an answer in flight when the first probe looked has arrived by then.
        suspicions++;
        if (deadlinePassed && suspicions >= 2) return silent(finding, pid);
        nextProbeAt = Math.max(now + interval, alive + wait.millis);
        break;
    }
    tick();
    return false;
  };

  const probe = (): void => {
    const pid = session.pid();
    if (pid === undefined) {
      if (clock.monotonicNow() - alive >= wait.millis) silent({ kind: 'gone' }, undefined);
      else schedule(alive + wait.millis - clock.monotonicNow());
      return;
    }
    // The blockers are asked for once the lock wait reached the bound (by the server's count, or by the probes').
    const blockersAfterMillis = lockSeenAt === undefined ? lockLimit : Math.max(0, lockLimit - (clock.monotonicNow() - lockSeenAt));
    void session.prober.probe({ pid, deadlineMillis: probeMillis, blockersAfterMillis }, (finding) => decide(finding, pid));
  };

  function tick(): void {
    if (stopped) return;
    const now = clock.monotonicNow();
    if (wait.stalled !== undefined && !wait.stalled()) {
      alive = now;
      inspected = now;
      suspicions = 0;
      nextProbeAt = now + probeEvery;
      return schedule(interval);
    }
    if (now < nextProbeAt) return schedule(wait.stalled === undefined ? nextProbeAt - now : Math.min(interval, nextProbeAt - now));
    probe();
  }

  schedule(wait.stalled === undefined ? probeEvery : interval);
  return () => {
    stopped = true;
    cancel();
  };
}
