/**
 * The path to a shard drops mid-statement while the shard itself lives on: its answer never comes,
 * its backend is idle (it sent the answer) and nothing tells it the mover is gone. The deadline's
 * probe, through a fresh connection, finds the backend idle while the mover still waits (twice, an
 * interval apart), drops the session with ShardSilentError saying so, and ends the backend, which
 * would otherwise keep its transaction (and its locks) open. The dropped path is a loopback TCP
 * relay in front of the real server that stops passing the server's bytes on one connection, and
 * keeps its server side open when the client goes, as a path that drops packets does.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession, type ShardSession } from '../../../src/admin/mover/shard-session';
import { ShardSilentError } from '../../../src/admin/mover/mover-errors';
import { expectBackendGone, within } from './within-deadline';

let cluster: TestCluster;
let serverUrl: URL;
let relay: Server;
const connections: { client: Socket; server: Socket; dropReplies: () => void }[] = [];
const sockets: Socket[] = [];
let session: ShardSession | undefined;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('path_dropped');
  serverUrl = new URL(shard!.primaryUrl);
  relay = createServer((client) => {
    const server = connect(Number(serverUrl.port), serverUrl.hostname);
    sockets.push(client, server);
    let replies = true;
    client.on('data', (chunk) => server.write(chunk));
    server.on('data', (chunk) => replies && client.write(chunk));
    client.on('error', () => undefined);
    server.on('error', () => undefined);
    client.on('close', () => undefined); // the server side stays open: nothing tells the backend
    server.on('close', () => client.destroy());
    connections.push({ client, server, dropReplies: () => (replies = false) });
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
}, 60_000);

afterAll(async () => {
  session?.destroy();
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => relay?.close(resolve));
  await cluster?.stop();
});

test('a statement whose answer is lost on the way fails with ShardSilentError (backend idle), and the backend is ended', async () => {
  const viaRelay = new URL(serverUrl);
  viaRelay.hostname = '127.0.0.1';
  viaRelay.port = String((relay.address() as { port: number }).port);
  session = await openShardSession(viaRelay.toString(), 5000, { shard: 'relayed', deadlines: { statementTimeoutMillis: 1000 } });
  const pid = (session.client as unknown as { processID: number }).processID;
  await session.client.query('begin');
  await session.client.query('create table held (id int)'); // a lock its transaction keeps while it lives
  connections[0]!.dropReplies();
  const started = performance.now();
  const failure = await within(15_000, 'a statement on a dropped path', session.client.query('select 1').then(() => undefined, (error: unknown) => error as Error));
  const failedAfterMillis = Math.round(performance.now() - started);
  console.log(JSON.stringify({ pathDropped: { failedAfterMillis, error: failure?.message } }));
  expect(failure).toBeInstanceOf(ShardSilentError);
  expect(failure!.message).toMatch(
    new RegExp(`^Shard "relayed" did not answer a statement \\("select \\?"\\) within 1000 ms \\(statementTimeoutMillis, --statement-timeout-ms\\), and its backend \\(pid ${pid}\\) is idle in transaction, its answer never came: the connection to it was lost\\. `),
  );
  // Idle seen at the deadline, then again an interval (100 ms) later.
  expect(failedAfterMillis).toBeGreaterThanOrEqual(1000);
  expect(failedAfterMillis).toBeLessThan(3000);
  // The backend is gone, and with it its transaction's lock.
  await expectBackendGone(serverUrl.toString(), pid);
});
