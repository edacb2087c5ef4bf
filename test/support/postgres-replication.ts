/** Helpers for tests that need to see streaming replication happen (fresh connections, no pools). */
import { setTimeout as delay } from 'node:timers/promises';
import { Client } from 'pg';

/** Runs `fn` on a fresh connection to `url`. */
export async function withPg<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Polls `check` until it returns true, failing after `timeoutMillis` (no fixed sleeps). */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMillis = 10_000): Promise<void> {
  const until = Date.now() + timeoutMillis;
  let last: unknown;
  while (Date.now() < until) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await delay(25);
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
}

/** Waits until the replica has replayed everything the primary had written when called. */
export async function waitForReplay(primaryUrl: string, replicaUrl: string): Promise<void> {
  const lsn = await withPg(primaryUrl, async (c) => (await c.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l as string);
  await eventually(`replay of ${lsn} on ${replicaUrl}`, () =>
    withPg(replicaUrl, async (c) => (await c.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn])).rows[0].ok === true),
  );
}
