/**
 * The return path of a mover session drops while its shard is sending a large answer: the backend
 * blocks writing to the connection (`pg_stat_activity`: active, waiting on `Client`/`ClientWrite`)
 * while the mover waits for that answer, each waiting on the other. The deadline's probe, through a
 * fresh connection (which passes), finds the backend waiting on the connection twice, an interval
 * apart: the session is dropped with ShardSilentError saying so, and the backend is ended, with the
 * locks of its transaction. The lost path is a loopback proxy that stops reading the server's bytes
 * on the connections open at the time (so the server's socket buffers fill) and passes new ones.
 */
import { Client } from 'pg';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession, type ShardSession } from '../../../src/admin/mover/shard-session';
import { ShardSilentError } from '../../../src/admin/mover/mover-errors';
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy';
import { expectBackendGone, within } from './within-deadline';

let cluster: TestCluster;
let serverUrl: URL;
let proxy: TcpProxy;
let session: ShardSession | undefined;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('client_write');
  serverUrl = new URL(shard!.primaryUrl);
  proxy = await startTcpProxy(Number(serverUrl.port), serverUrl.hostname);
}, 60_000);

afterAll(async () => {
  session?.destroy();
  await proxy?.close();
  await cluster?.stop();
});

test('a statement whose large answer the path stops carrying fails with ShardSilentError (backend waiting on ClientWrite), and the backend is ended', async () => {
  const viaProxy = new URL(serverUrl);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  session = await openShardSession(viaProxy.toString(), 5000, { shard: 'relayed', deadlines: { statementTimeoutMillis: 1000 } });
  const pid = (session.client as unknown as { processID: number }).processID;
  await session.client.query('begin');
  await session.client.query('create table held (id int)'); // a lock its transaction keeps while it lives
  proxy.stallReplies();
  const started = performance.now();
  // About 200 MB: far beyond the loopback socket buffers (at most 32 MB read, 4 MB write here), so the backend blocks sending it.
  const answer = session.client.query(`select repeat('x', 1000) as row from generate_series(1, 200000)`);
  const failure = await within(15_000, 'a large answer on a dropped path', answer.then(() => undefined, (error: unknown) => error as Error));
  const failedAfterMillis = Math.round(performance.now() - started);
  console.log(JSON.stringify({ clientWrite: { failedAfterMillis, error: failure?.message } }));
  expect(failure).toBeInstanceOf(ShardSilentError);
  expect(failure!.message).toMatch(
    new RegExp(
      `^Shard "relayed" did not answer a statement \\("select repeat\\(\\?, \\?\\) as row from generate_series\\(\\?, \\?\\)"\\) within 1000 ms \\(statementTimeoutMillis, --statement-timeout-ms\\), ` +
        `and its backend \\(pid ${pid}\\) waits on the connection \\(ClientWrite\\) while the mover waits on it: the connection was lost\\. `,
    ),
  );
  expect((failure as ShardSilentError).finding).toContain('ClientWrite');
  // Waiting on the connection seen at the deadline, then again an interval (100 ms) later.
  expect(failedAfterMillis).toBeGreaterThanOrEqual(1000);
  expect(failedAfterMillis).toBeLessThan(3000);
  // The backend is gone, and with it its transaction's lock (the proxy still holds its socket open).
  await expectBackendGone(serverUrl.toString(), pid);
});
