/**
 * `testcontainers` is an optional peer dependency: the Docker backend needs it, the local one
 * does not, and most users of `kysely-scale/testing` run local processes in CI.
 */

/** The package to install for the Docker backend, as the messages name it. */
export const TESTCONTAINERS_INSTALL = 'npm install --save-dev testcontainers@^11';

/**
 * Whether `testcontainers` can be loaded. Only a missing `testcontainers` itself counts as "not
 * installed"; a broken install (one of its own dependencies missing) still throws.
 */
export async function testcontainersInstalled(): Promise<boolean> {
  try {
    await import('testcontainers');
    return true;
  } catch (error) {
    if (isMissing(error, 'testcontainers')) return false;
    throw error;
  }
}

function isMissing(error: unknown, name: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (code !== 'MODULE_NOT_FOUND' && code !== 'ERR_MODULE_NOT_FOUND') return false;
  // CommonJS: Cannot find module 'testcontainers'; ESM: Cannot find package 'testcontainers' imported from …
  return typeof message === 'string' && new RegExp(`Cannot find (module|package) '${name}'`).test(message);
}

let noticeGiven = false;

/** Emits a process warning once per process (later calls do nothing). */
export function noticeOnce(message: string): void {
  if (noticeGiven) return;
  noticeGiven = true;
  process.emitWarning(message, { type: 'KyselyScaleWarning', code: 'KYSELY_SCALE_NO_TESTCONTAINERS' });
}
