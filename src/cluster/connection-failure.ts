// SQLSTATE class 08 (connection exception), admin/crash shutdown and "cannot connect now".
const SQLSTATE = /^(08...|57P0[123])$/;
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND']);
const MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i;

/**
 * Whether a pg error means the server could not be reached or dropped the connection (the
 * statement may be retried elsewhere), as opposed to an error of the statement itself.
 */
export function isConnectionFailure(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = sqlState(error);
  if (typeof code === 'string' && (SQLSTATE.test(code) || SOCKET_CODES.has(code))) return true;
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && MESSAGES.test(message);
}

/** Whether a checkout failed because the pool had no free connection in time (pg-pool's connection timeout). */
export function isPoolTimeout(error: unknown): boolean {
  const message = typeof error === 'object' && error !== null ? (error as { message?: unknown }).message : undefined;
  return typeof message === 'string' && /timeout exceeded when trying to connect/i.test(message);
}

/**
 * Whether a statement on a hot standby was cancelled because it conflicted with WAL replay
 * (SQLSTATE 40001, or 40P01 for a buffer-pin deadlock): the standby is fine and a plain read
 * can run again on the primary.
 */
export function isRecoveryConflict(error: unknown): boolean {
  const code = sqlState(error);
  return code === '40001' || code === '40P01';
}

/**
 * Whether a standby refused a statement as a write (SQLSTATE 25006: a locking clause in a
 * subquery, `nextval`, a function that writes). Nothing happened, so it can run on the primary.
 */
export function isReadOnlyRefusal(error: unknown): boolean {
  return sqlState(error) === '25006';
}

function sqlState(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}
