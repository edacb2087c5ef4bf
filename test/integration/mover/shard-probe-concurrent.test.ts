/**
 * Two waits on one mover session probe at once (pg queues the second statement behind the first,
 * both under the session's deadline) while the session's kept probe connection is stale (its
 * backend stopped): each probe opens a fresh connection, and each fresh winner is kept in turn.
 * Before, the one kept first was replaced without being closed, and it stayed open after the
 * session closed (review 59). Now every probe connection closes with the session.
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession } from '../../../src/admin/mover/shard-session';
import { PROBE_APPLICATION_NAME } from '../../../src/admin/mover/shard-liveness';
import { eventually } from '../../support/postgres-replication';

let cluster: TestCluster;
let admin: Client;
let url: string;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('probe_concurrent');
  url = shard!.primaryUrl;
  admin = directClient(url);
  await admin.connect();
}, 60_000);

afterAll(async () => {
  await admin?.end();
  await cluster?.stop();
});

const probePids = async (): Promise<number[]> =>
  (await admin.query<{ pid: number }>('select pid from pg_stat_activity where application_name = $1', [PROBE_APPLICATION_NAME])).rows.map((r) => r.pid);

test('probes of two waits at once on one session with a stale kept probe connection: healthy statements complete, and no probe connection outlives the session', async () => {
  const session = await openShardSession(url, 5000, { shard: 'shard0', deadlines: { statementTimeoutMillis: 1000, copyIdleTimeoutMillis: 1000 } });
  await session.client.query('select pg_sleep(1.6)'); // past the deadline: a probe connection is opened and kept
  const [kept] = await probePids();
  expect(kept).toBeDefined();
  process.kill(kept!, 'SIGSTOP');
  try {
    await Promise.all([session.client.query('select pg_sleep(2.5)'), session.client.query('select pg_sleep(2.5)')]);
  } finally {
    process.kill(kept!, 'SIGCONT');
  }
  await session.close();
  await eventually('every probe connection closed', async () => (await probePids()).length === 0, 5000);
}, 60_000);
