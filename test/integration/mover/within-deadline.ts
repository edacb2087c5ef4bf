import { directClient } from '../../support/direct-pool';
import { eventually } from '../../support/postgres-replication';

/** `promise`, or a failure once `millis` passed: what a test of a deadline waits at most (code without one waited forever). */
export function within<T>(millis: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${millis} ms`)), millis);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** How `promise` settled (its error, if any) and after how long, logged as one JSON line; at most `limit` waited. */
export async function outcome(name: string, promise: Promise<unknown>, limit = 30_000): Promise<{ ms: number; error: Error | undefined }> {
  const started = performance.now();
  const error = await within(limit, name, promise).then(() => undefined, (e: unknown) => e as Error);
  const ms = Math.round(performance.now() - started);
  console.log(JSON.stringify({ [name]: { ms, error: error?.message ?? null } }));
  return { ms, error };
}

/** Checks from a connection of its own (to `url`) that backend `pid` ends, and with it every lock it held. */
export async function expectBackendGone(url: string, pid: number): Promise<void> {
  const check = directClient(url);
  await check.connect();
  try {
    await eventually('the backend ends', async () => (await check.query('select 1 from pg_stat_activity where pid = $1', [pid])).rowCount === 0);
    expect((await check.query(`select count(*)::int as n from pg_locks where pid = $1`, [pid])).rows[0].n).toBe(0);
  } finally {
    await check.end();
  }
}
