/**
 * How a move-record save's statements reach the catalog ({@link MoveStore.save}): each on a
 * connection of its own, within one budget for the whole save; whether a statement's connection
 * broke under it (the save is then sent once more); and the error when that resend, or the read
 * after it, failed too (the save's outcome unknown).
 */
import type { QueryResult, QueryResultRow } from 'pg';
import { systemClock, type Clock } from '../../kernel/clock';
import { DeadlineError, withDeadline } from '../../kernel/deadline';
import { KyselyScaleError } from '../../kernel/errors';
import { redactText } from '../../kernel/redact';
import { CatalogTimeoutError, GRACE_MILLIS, type CatalogDeadlines } from '../catalog-connections';
import { MoveFailedError } from './mover-errors';

/** Statements on the catalog (a `CatalogPool`, with its deadlines, or a pg `Pool`). */
export interface StoreQueries {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/**
 * Connections to the catalog: statements, and a session of its own (released afterwards; `true`
 * drops it). A `CatalogPool`'s session says when it is `lost` (its connection failed, or a
 * statement passed its deadline and the connection was dropped): nothing more is sent on it.
 */
export interface StorePool extends StoreQueries {
  connect(): Promise<StoreQueries & { release(destroy?: boolean): void; readonly lost?: AbortSignal }>;
  /** A `CatalogPool`'s deadlines: one save's budget ({@link MoveStore.save}). Without them and {@link redactedUrl} (a pg `Pool`), a save has no budget of its own. */
  readonly deadlines?: Required<CatalogDeadlines>;
  /** The catalog's URL, password redacted (named when a save's budget runs out, or its outcome is unknown). */
  readonly redactedUrl?: string;
  /** Opens new connections from now on (a `CatalogPool`'s `renew`): called once one broke under a statement. */
  renew?(): void;
}

/** Runs `start()` within what is left of a save's budget (not at all once nothing is); past it, `onLate` gets what it started and the budget's error is thrown (`cause`: why this step runs). */
export type SaveBudget = <T>(start: () => Promise<T>, onLate: (pending: Promise<T>) => void, cause?: unknown) => Promise<T>;

/** The budget of one save on `pool`: one connection's and one statement's deadline (none for a pool without deadlines). */
export function saveBudget(pool: StorePool, clock: Clock = systemClock): SaveBudget {
  const { deadlines, redactedUrl } = pool;
  if (deadlines === undefined || redactedUrl === undefined) return (start) => start();
  const millis = deadlines.connectionTimeoutMillis + deadlines.statementTimeoutMillis + 2 * GRACE_MILLIS;
  const within = `connectionTimeoutMillis + statementTimeoutMillis + 2 × ${GRACE_MILLIS} ms: one save, its resend and read included`;
  const fail = (cause: unknown): Error => new CatalogTimeoutError(redactedUrl, 'a move-record save', millis, 'statementTimeoutMillis', cause, { within });
  const end = clock.monotonicNow() + millis;
  return async (start, onLate, cause) => {
    const left = end - clock.monotonicNow();
    if (left <= 0) throw fail(cause);
    const pending = start();
    let passed = false;
    try {
      const late = (): void => {
        passed = true;
        onLate(pending);
      };
      return await withDeadline(pending, left, 'a move-record save', { clock, onLate: late });
    } catch (error) {
      throw passed ? fail(cause ?? error) : error;
    }
  };
}

/**
 * `text` on a connection of its own from `pool`, within what is left of `budget`. A failed connect
 * is thrown (never retried); a statement's error is returned, its connection dropped (and, broken,
 * the pool's older connections with it). `cause`: why this is a second statement (a late one names it).
 */
export async function sendAlone<R extends QueryResultRow>(pool: StorePool, budget: SaveBudget, text: string, values: unknown[], cause?: unknown): Promise<{ rows: R[] } | { failed: unknown }> {
  const session = await budget(() => pool.connect(), (pending) => void pending.then((s) => s.release(true), () => undefined), cause);
  let released = false;
  const release = (destroy: boolean): void => {
    if (released) return;
    released = true;
    session.release(destroy || session.lost?.aborted === true);
  };
  try {
    const { rows } = await budget(() => session.query<R>(text, values), () => release(true), cause);
    release(false);
    return { rows };
  } catch (error) {
    release(true);
    if (connectionBroke(error)) pool.renew?.();
    return { failed: error };
  }
}

/** SQLSTATEs of a server process that ended under a statement: terminated (57P01: pg_terminate_backend, a fast shutdown), crashed (57P02), a connection failure. */
const ENDED_UNDER_STATEMENT = new Set(['57P01', '57P02', '08006', '08003']);

/**
 * Whether a statement's `error` is its open connection breaking under it (reset, its server process
 * terminated or crashed, the connection ended), or that connection found broken when used. Not a
 * deadline that passed (`E_CATALOG_UNAVAILABLE`), or a statement's own error. (A connect's error is
 * never retried, whatever it is: a catalog that refuses, or accepts and closes, is asked once.)
 */
export function connectionBroke(error: unknown): boolean {
  if (error instanceof DeadlineError) return false;
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ECONNRESET' || code === 'EPIPE' || (typeof code === 'string' && ENDED_UNDER_STATEMENT.has(code))) return true;
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && /^(Connection terminated unexpectedly|Client has encountered a connection error and is not queryable)$/.test(message);
}

/** Which statement after a broken save failed, leaving its outcome unknown. */
export type UnconfirmedStep = 'resend-connect' | 'resend' | 'read';

const FAILED: Record<UnconfirmedStep, string> = {
  'resend-connect': 'its resend could not connect',
  resend: 'its resend broke too',
  read: 'its resend was refused and the read that tells whether the first attempt is in failed',
};

/**
 * The error of a save whose connection broke after it was sent, when `step` failed too with `error`:
 * whether the save is in is unknown, so it is `E_MOVE_FAILED` with `context.reason`
 * `save-unconfirmed` (never `record-changed`: no other command is known to exist, and a cutover's
 * caller must still back out). An error that already says what happened (a budget run out,
 * `E_CATALOG_UNAVAILABLE`; a refusal, `record-changed`) is returned as it is.
 */
export function saveUnconfirmed(pool: StorePool, moveId: number, step: UnconfirmedStep, error: unknown): unknown {
  if (error instanceof KyselyScaleError || error instanceof DeadlineError) return error;
  const catalog = pool.redactedUrl === undefined ? 'the catalog' : `the catalog ${pool.redactedUrl}`;
  const why = redactText(error instanceof Error ? error.message : String(error));
  const code = (error as { code?: unknown } | null)?.code;
  return new MoveFailedError(
    `Move ${moveId}: a save of its record to ${catalog} was sent and its connection broke, then ${FAILED[step]} (${why}): whether that save is in is unknown. ` +
      'Check that the catalog is up and reachable from here, then run `status` to see where the move stands, then resume or abort it.',
    { moveId, reason: 'save-unconfirmed', catalog: pool.redactedUrl ?? null, step, ...(typeof code === 'string' ? { causeCode: code } : {}) },
    error,
  );
}
