/**
 * The catalog's operator lock: a PostgreSQL advisory lock on a catalog session of its own, held
 * while an operator's command changes the topology, so two commands never do at once. The session
 * is proven alive by a heartbeat; once it is lost, the command is told (`lost`) and should stop
 * before changing anything else.
 *
 * A session lost here may live on at the server: when only the path went silent (a dropped NAT
 * entry, a load balancer's state), the server never sees the connection close and its process
 * keeps the lock until TCP keepalive ends it, by default after two hours. So every lock session
 * dropped after it asked for the lock (lost, its unlock or its lock request unanswered) is
 * remembered by its server process's identity (pid and start time, read before the lock is asked
 * for: a pid alone may be reused by another session) and ended (`pg_terminate_backend`) when the
 * command ends and when this catalog asks for the lock again. Ending it needs the catalog to answer
 * then, and a direct connection (behind a pooler the process is not known): otherwise the orphan
 * keeps the lock until the server notices.
 */
import { systemClock, type Clock } from '../kernel/clock';
import { OperatorBusyError } from './admin-errors';
import type { CatalogPool, CatalogSession } from './catalog-connections';

/** Where the lock lives, and what a lock session needs. */
export interface OperatorLockSite {
  readonly pool: CatalogPool;
  /** The lock's key (hashed by the server: `hashtext`). */
  readonly key: string;
  /** The application name of the pool's sessions (an orphaned lock session is ended only under it). */
  readonly applicationName: string;
  readonly heartbeatIntervalMillis: number;
  /** How long ending an orphaned lock session may wait for it to go. */
  readonly statementTimeoutMillis: number;
  /** Schedules the heartbeats. */
  readonly clock: Clock;
  /** Server processes of this catalog's dropped lock sessions that may still run (and hold the lock) at the server, by {@link ServerProcess.key}. */
  readonly orphans: Map<string, ServerProcess>;
  /**
   * A sequence (a quoted, qualified name) the lock hands each holder an epoch from: drawn on the
   * lock's own session while the lock is held, when the holder asks (an answer from that session
   * proves its server process, and so the lock, alive at the draw), so every later holder draws a
   * larger one. Created when missing. Without it (or without its schema: a catalog not installed),
   * the holder draws no epoch.
   */
  readonly epochSequence?: string;
}

/** A server process's start time (`pg_stat_activity.backend_start`) in microseconds since the epoch, as text. */
const STARTED = `(extract(epoch from backend_start) * 1000000)::bigint::text`;

/** A server process, told apart from a later one that reuses its pid by its start time. */
export interface ServerProcess {
  readonly pid: number;
  /** `backend_start`, in microseconds since the epoch (as text: exact, whatever the session's time zone or date style). */
  readonly started: string;
  /** `pid@started`. */
  readonly key: string;
}

/**
 * What a command runs while it holds the lock. `lost` is aborted once the lock's session is lost.
 * `confirm()` proves the lock held now (its session answers `select 1`: an advisory lock is only
 * let go by its session or with it) and fails, aborting `lost`, otherwise: a command confirms
 * before a step that must not race another operator. `epoch`: the holder's fencing token
 * ({@link OperatorEpoch}), drawn only when asked for.
 */
export type OperatorLockBody<T> = (lost: AbortSignal, confirm: () => Promise<void>, epoch: OperatorEpoch) => Promise<T>;

/**
 * A lock holder's fencing token. `draw()` takes it from {@link OperatorLockSite.epochSequence} on the
 * lock's own session (once: later calls give the same), so every later holder that draws has a
 * larger one; undefined without a sequence, or on a catalog not installed. Drawn on demand: a
 * command that changes no shard through the slot mover (init, migrate) never touches the sequence,
 * so an operator role without rights on it still runs them. `latest()` reads the sequence's last
 * value drawn (by anyone), `sequence` is its quoted name.
 */
export interface OperatorEpoch {
  draw(): Promise<bigint | undefined>;
  latest(): Promise<bigint | undefined>;
  readonly sequence: string | undefined;
}

/** Runs `fn` holding the lock; fails at once with {@link OperatorBusyError} when another session holds it. */
export async function holdOperatorLock<T>(site: OperatorLockSite, fn: OperatorLockBody<T>): Promise<T> {
  const session: CatalogSession = await site.pool.connect();
  // Aborted when the lock's connection fails or a statement on it passes its deadline, or a heartbeat fails otherwise.
  const lockLost = new AbortController();
  const lost = lockLost.signal;
  const onSessionLost = (): void => lockLost.abort(session.lost.reason);
  if (session.lost.aborted) onSessionLost();
  else session.lost.addEventListener('abort', onSessionLost, { once: true });
  let locked = false;
  let broken = true; // until the lock was asked for: a session whose statement failed is not reused
  let beatPending = false;
  let self: ServerProcess | undefined; // known once read, before the lock is asked for
  try {
    self = await identify(session);
    locked = await takeLock(site, session).catch((error: unknown) => {
      if (error instanceof OperatorBusyError) broken = false; // answered: the session holds nothing
      throw error;
    });
    broken = false;
    // Once lost, the session is dropped at once (a pool connection for what `fn` does next: a mover
    // takes the lock again to back out), and its server process is remembered as a possible orphan.
    lost.addEventListener(
      'abort',
      () => {
        if (self !== undefined) site.orphans.set(self.key, self);
        session.release(true);
      },
      { once: true },
    );
    const confirm = async (): Promise<void> => {
      if (lost.aborted) throw lostError(lost);
      await session.query('select 1').catch((error: unknown) => {
        lockLost.abort(error);
        throw lostError(lost);
      });
    };
    const epoch = operatorEpoch(session, site.epochSequence, lost);
    const heartbeat = lockHeartbeat(site, session, lockLost);
    try {
      return await fn(lost, confirm, epoch);
    } finally {
      beatPending = heartbeat.stop();
    }
  } finally {
    session.lost.removeEventListener('abort', onSessionLost);
    // A lost session's connection was dropped: nothing more is sent on it. Nor is anything sent
    // behind a heartbeat still unanswered (a silent path would hold the unlock to its deadline).
    if (locked && !session.lost.aborted && !lost.aborted && !beatPending) {
      await session.query('select pg_advisory_unlock(hashtext($1))', [site.key]).catch(() => {
        broken = true; // never hand a session that may still hold the lock back to the pool
      });
    }
    const dropped = broken || beatPending || lost.aborted;
    session.release(dropped);
    // Dropped after the lock was asked for (lost, the unlock or the lock request unanswered): its
    // server process may live on holding the lock.
    if (dropped && self !== undefined) {
      site.orphans.set(self.key, self);
      await endOrphans(site).catch(() => undefined);
    }
  }
}

/** The session's server process (one round trip, before the lock is asked for). */
async function identify(session: CatalogSession): Promise<ServerProcess> {
  const { rows } = await session.query<{ pid: number; started: string }>(`select pid, ${STARTED} as started from pg_stat_activity where pid = pg_backend_pid()`);
  const row = rows[0]!;
  return { pid: row.pid, started: row.started, key: `${row.pid}@${row.started}` };
}

/** The holder's {@link OperatorEpoch} on the lock's `session` (a lost lock draws nothing: its epoch would prove nothing). */
function operatorEpoch(session: CatalogSession, sequence: string | undefined, lost: AbortSignal): OperatorEpoch {
  let drawn: Promise<bigint | undefined> | undefined;
  return {
    sequence,
    draw: () => {
      if (lost.aborted) return Promise.reject(lostError(lost));
      drawn ??= sequence === undefined ? Promise.resolve(undefined) : drawEpoch(session, sequence);
      return drawn;
    },
    latest: async () => {
      if (sequence === undefined || lost.aborted) return undefined;
      // pg_sequence_last_value needs USAGE or SELECT (a select from the sequence needs SELECT); NULL: never drawn.
      const { rows } = await session.query<{ last: string | null }>(`select pg_sequence_last_value('${sequence.replace(/'/g, "''")}'::regclass)::text as last`);
      const last = rows[0]?.last;
      return last === undefined ? undefined : BigInt(last ?? 0);
    },
  };
}

/**
 * The next value of `sequence`, drawn on the lock's session (the sequence created first on a catalog
 * installed before it existed); undefined when its schema does not exist (a catalog not installed:
 * nothing there to fence).
 */
async function drawEpoch(session: CatalogSession, sequence: string): Promise<bigint | undefined> {
  const draw = async (): Promise<bigint> => BigInt((await session.query<{ epoch: string }>(`select nextval('${sequence}')::text as epoch`)).rows[0]!.epoch);
  try {
    return await draw();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === '3F000') return undefined;
    if (code !== '42P01') throw error;
    await session.query(`create sequence if not exists ${sequence}`).catch((race: unknown) => {
      if (!['23505', '42P07'].includes(String((race as { code?: unknown }).code))) throw race;
    });
    return draw();
  }
}

/** Asks for the lock on `session`: taken, or (held by an orphan of this catalog) taken once it is ended, or {@link OperatorBusyError}. */
async function takeLock(site: OperatorLockSite, session: CatalogSession): Promise<true> {
  for (let attempt = 1; ; attempt++) {
    const { rows } = await session.query<{ locked: boolean }>('select pg_try_advisory_lock(hashtext($1)) as locked', [site.key]);
    if (rows[0]?.locked === true) return true;
    const holder = await session.query<{ pid: number; application_name: string; started: string }>(
      `select a.pid, a.application_name, ${STARTED} as started from pg_locks l join pg_stat_activity a using (pid)
       where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database where datname = current_database())
         and l.objsubid = 1 and l.objid = (hashtext($1)::bigint & 4294967295)::oid`,
      [site.key],
    );
    const who = holder.rows[0];
    const orphan = who === undefined ? undefined : site.orphans.get(`${who.pid}@${who.started}`);
    if (attempt === 1 && orphan !== undefined) {
      await endOrphan(site, session, orphan);
      continue;
    }
    throw new OperatorBusyError(
      `Another operator is changing the topology${who === undefined ? '' : ` (PostgreSQL backend ${who.pid}, application "${who.application_name}")`}: wait until it finishes.`,
      who === undefined ? {} : { pid: who.pid, applicationName: who.application_name },
    );
  }
}

/** Ends every remembered orphan on a fresh session of the pool. */
async function endOrphans(site: OperatorLockSite): Promise<void> {
  if (site.orphans.size === 0) return;
  const session = await site.pool.connect();
  let failed = false;
  try {
    for (const orphan of [...site.orphans.values()]) await endOrphan(site, session, orphan);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    session.release(failed);
  }
}

/** Ends server process `orphan` (that very process: pid, start time, role and application name) and waits, at most `statementTimeoutMillis`, until it is gone. */
async function endOrphan(site: OperatorLockSite, session: CatalogSession, orphan: ServerProcess): Promise<void> {
  const it = `pid = $1 and ${STARTED} = $2 and usename = current_user and application_name = $3`;
  const values = [orphan.pid, orphan.started, site.applicationName];
  await session.query(`select pg_terminate_backend(pid) from pg_stat_activity where ${it}`, values);
  const started = performance.now();
  for (let pause = 1; ; pause = Math.min(pause * 2, 50)) {
    const { rows } = await session.query<{ alive: boolean }>(`select exists (select 1 from pg_stat_activity where ${it}) as alive`, values);
    if (rows[0]?.alive !== true) break;
    if (performance.now() - started > site.statementTimeoutMillis) return; // still there: the lock stays busy
    // Real time on purpose: a test's ManualClock must not hold it.
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, pause));
  }
  site.orphans.delete(orphan.key); // gone (or never there: another server, after a failover)
}

function lostError(lost: AbortSignal): Error {
  const reason = (lost.reason as Error | undefined)?.message;
  return new Error(`the operator lock's catalog session was lost${reason === undefined ? '' : ` (${reason})`}`);
}

/** Runs `select 1` on the lock's session every heartbeat interval until stopped or lost; one that fails or is late aborts `lockLost`. */
function lockHeartbeat(site: OperatorLockSite, session: CatalogSession, lockLost: AbortController): { stop(): boolean } {
  let stopped = false;
  let beating = false;
  let cancel = (): void => undefined;
  const schedule = (): void => {
    if (stopped) return;
    cancel = site.clock.setTimeout(() => {
      if (stopped || lockLost.signal.aborted) return;
      // Any failure, a server error on a session still open (a cancel) included: the lock can no longer be vouched for.
      beating = true;
      session.query('select 1').then(
        () => {
          beating = false;
          schedule();
        },
        (error: unknown) => {
          beating = false;
          lockLost.abort(error);
        },
      );
    }, site.heartbeatIntervalMillis);
  };
  schedule();
  return {
    /** Stops the beats; true when one is still unanswered. */
    stop: () => {
      stopped = true;
      cancel();
      return beating;
    },
  };
}
