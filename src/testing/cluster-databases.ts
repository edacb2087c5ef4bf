import { isConnectionFailure } from '../cluster/connection-failure';
import { PRIMARY_WAL_END_SQL } from '../cluster/wal-position';
import { ConfigError } from '../kernel/errors';
import { redactText, redactUrl } from '../kernel/redact';
import { deadlineIn, pollUntil, testClusterError } from './cluster-wait';
import { withPgClient, type PgAddress } from './pg-probe';
import { giveShardIdentity } from './shard-identity';
import type { TestServer, TestShard, TestShardUrls } from './test-cluster-types';

/**
 * Replaying a CREATE DATABASE takes milliseconds; a replica that needs more than 15 s is broken,
 * and saying so beats a test runner's generic timeout.
 */
export function replayTimeoutMillis(options: { readonly startTimeoutMillis: number }): number {
  return Math.min(options.startTimeoutMillis, 15_000);
}

const DATABASE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function addressOf(server: TestServer): PgAddress {
  const url = new URL(server.url);
  return { host: url.hostname, port: Number(url.port) };
}

/** The server's URL with another database name. */
export function urlWithDatabase(server: TestServer, database: string): string {
  const url = new URL(server.url);
  url.pathname = `/${database}`;
  return url.toString();
}

/**
 * CREATE DATABASE on every primary, then waits until each running replica has replayed WAL past
 * the primary's insert position taken after the create (so the database is there), bounded by
 * `replayTimeoutMillis`. A replica that a test has stopped is not waited for: it replays the
 * create when it is started again.
 */
export async function createDatabaseOnShards(
  shards: readonly TestShard[],
  name: string,
  replayTimeoutMillis: number,
): Promise<readonly TestShardUrls[]> {
  if (typeof name !== 'string' || !DATABASE_NAME.test(name)) {
    throw new ConfigError(
      'name',
      `database names must be lower-case letters, digits and underscores (at most 63, not starting with a digit), got ${JSON.stringify(name)}`,
    );
  }
  return Promise.all(
    shards.map(async (shard): Promise<TestShardUrls> => {
      const lsn = await withPgClient(addressOf(shard.primary), async (client) => {
        await client.query(`CREATE DATABASE "${name}"`);
        await giveShardIdentity(addressOf(shard.primary), name, shard.id);
        const { rows } = await client.query<{ lsn: string }>(`SELECT ${PRIMARY_WAL_END_SQL} AS lsn`);
        return rows[0]?.lsn ?? '0/0';
      }).catch((error: unknown) => {
        // A server that cannot be reached is named; PostgreSQL's own errors (42P04, …) pass unchanged.
        if (!isConnectionFailure(error)) throw error;
        const server = redactUrl(shard.primary.url);
        const message = redactText(String((error as { message?: unknown }).message ?? error), [shard.primary.url]);
        throw testClusterError(
          `createDatabase(${JSON.stringify(name)}): the primary of ${shard.id} (${server}) does not answer: ${message}${shard.primary.running ? '' : ' (it was stopped: start() it first)'}`,
          { shard: shard.id, server },
          error,
        );
      });
      const deadline = deadlineIn(replayTimeoutMillis);
      await Promise.all(
        shard.replicas.filter((replica) => replica.running).map((replica) =>
          pollUntil(
            () =>
              withPgClient(addressOf(replica), async (client) => {
                const { rows } = await client.query<{ done: boolean }>(
                  'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done',
                  [lsn],
                );
                return rows[0]?.done === true || undefined;
              }),
            {
              deadline,
              what: `the replica ${replica.url} of ${shard.id} to replay CREATE DATABASE ${name} (primary LSN ${lsn})`,
              timeoutHint: 'Is the replica running (a test may have stopped it) and streaming from its primary?',
            },
          ),
        ),
      );
      return Object.freeze({
        id: shard.id,
        primaryUrl: urlWithDatabase(shard.primary, name),
        replicaUrls: Object.freeze(shard.replicas.map((replica) => urlWithDatabase(replica, name))),
      });
    }),
  );
}
