/**
 * The operator lock's session is checked by a heartbeat on the catalog's clock. Without it, a
 * lock whose server let go while no packet came back (the catalog's host died or failed over, a
 * path dropped) went unnoticed: `lost` never fired, while a second operator took the lock and
 * both went on changing shards. Here the return path of the lock's connection is dropped by a
 * loopback proxy and its server process ended, so the server frees the lock and the client hears
 * nothing; the next heartbeat, past its deadline, aborts `lost`.
 */
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { CatalogTimeoutError } from '../../../src/admin/catalog-connections';
import { ManualClock } from '../../../src/kernel/clock';
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';
import { withPassword } from './admin-cli-process';

const HEARTBEAT_MILLIS = 10_000;

let cluster: TestCluster;
let catalogUrl: string;
let proxy: TcpProxy;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = (await cluster.createDatabase('lock_heartbeat')) as [TestShardUrls];
  catalogUrl = withPassword(shard.primaryUrl);
  const catalog = new TopologyCatalog({ url: catalogUrl });
  await catalog.install();
  await catalog.publish(createTopology({ shards: [{ id: 'shard0', primary: shard.primaryUrl }] }), 'init');
  await catalog.close();
  proxy = await startTcpProxy(Number(new URL(catalogUrl).port));
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await cluster?.stop();
});

/** The catalog's URL through the proxy. */
function viaProxy(): string {
  const url = new URL(catalogUrl);
  url.port = String(proxy.port);
  return url.toString();
}

test('a healthy lock session answers every heartbeat; none is left scheduled once the operator is done', async () => {
  const clock = new ManualClock();
  const catalog = new TopologyCatalog({ url: catalogUrl, clock, heartbeatIntervalMillis: HEARTBEAT_MILLIS });
  try {
    const beats = await catalog.withOperatorLock(async (lost) => {
      for (let i = 0; i < 3; i++) {
        expect(clock.pendingTimers).toBe(1);
        clock.advance(HEARTBEAT_MILLIS); // sends `select 1`; the next beat is scheduled once it answers
        await until('the next heartbeat scheduled', () => clock.pendingTimers === 1, 5000);
      }
      return lost.aborted ? 'lost' : 'held';
    });
    expect(beats).toBe('held');
    expect(clock.pendingTimers).toBe(0);
    // The lock was given back: another operator takes it at once.
    expect(await new TopologyCatalog({ url: catalogUrl }).withOperatorLock(async () => 'next')).toBe('next');
  } finally {
    await catalog.close();
  }
});

test('a lock the server freed while its replies could not come back: the next heartbeat aborts `lost` within the statement deadline', async () => {
  const clock = new ManualClock();
  const catalog = new TopologyCatalog({ url: viaProxy(), clock, heartbeatIntervalMillis: HEARTBEAT_MILLIS, statementTimeoutMillis: 500, connectionTimeoutMillis: 500 });
  const second = new TopologyCatalog({ url: catalogUrl });
  const direct = directPool({ connectionString: catalogUrl, max: 1 });
  let secondRan: unknown;
  let noticedAfterMillis = 0;
  try {
    const reason = await catalog.withOperatorLock(async (lost) => {
      proxy.stallReplies(); // the lock's connection hears nothing from its server from now on
      await direct.query(`select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and granted`);
      // The server freed the lock: a second operator takes it, and this one has not noticed.
      secondRan = await second.withOperatorLock(async () => 'second operator ran');
      expect(lost.aborted).toBe(false);
      const beat = performance.now();
      clock.advance(HEARTBEAT_MILLIS);
      await until('the lost lock noticed', () => lost.aborted, 5000);
      noticedAfterMillis = performance.now() - beat;
      return lost.reason as unknown;
    });
    expect(secondRan).toBe('second operator ran');
    expect(reason).toBeInstanceOf(CatalogTimeoutError);
    // The statement deadline (500 ms) plus its 500 ms grace, not the OS's TCP timeout.
    expect(noticedAfterMillis).toBeGreaterThanOrEqual(900);
    expect(noticedAfterMillis).toBeLessThan(3000);
    expect(clock.pendingTimers).toBe(0);
  } finally {
    await direct.end();
    await second.close();
    await catalog.close();
  }
}, 30_000);
