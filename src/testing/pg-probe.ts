import { Client } from 'pg';
import { pollUntil, type Deadline } from './cluster-wait';

/** Where a test PostgreSQL server listens; the user is always `postgres` with trust auth. */
export interface PgAddress {
  readonly host: string;
  readonly port: number;
  readonly database?: string;
}

/** Opens one short-lived connection, runs `fn`, and always closes it. */
export async function withPgClient<T>(
  address: PgAddress,
  fn: (client: Client) => Promise<T>,
  connectTimeoutMillis = 2000,
): Promise<T> {
  const client = new Client({
    host: address.host,
    port: address.port,
    user: 'postgres',
    database: address.database ?? 'postgres',
    connectionTimeoutMillis: Math.max(1, Math.ceil(connectTimeoutMillis)),
  });
  // A server going down mid-probe emits 'error' on the client; the failed query already reports it.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Waits until the server answers a query (a starting server refuses with 57P03 until then). */
export async function waitForPostgres(
  address: PgAddress,
  what: string,
  deadline: Deadline,
  abortReason?: () => string | undefined,
): Promise<void> {
  await pollUntil(
    () =>
      withPgClient(address, async (c) => (await c.query('SELECT 1')).rowCount === 1 || undefined, Math.min(1000, deadline.remainingMillis())),
    { deadline, what: `${what} to accept connections`, abortReason },
  );
}

/** Waits until a standby's WAL receiver streams from its primary (pg_stat_wal_receiver). */
export async function waitForStreaming(
  address: PgAddress,
  what: string,
  deadline: Deadline,
  abortReason?: () => string | undefined,
): Promise<void> {
  await pollUntil(
    () =>
      withPgClient(address, async (c) => {
        const { rows } = await c.query<{ status: string }>('SELECT status FROM pg_stat_wal_receiver');
        return rows[0]?.status === 'streaming' || undefined;
      }),
    { deadline, what: `${what} to stream WAL from its primary`, abortReason },
  );
}
