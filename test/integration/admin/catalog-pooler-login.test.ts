/**
 * The catalog behind a connection pooler. 1b11861 sent `statement_timeout` as a startup parameter,
 * which PgBouncer 1.18 refuses (`08P01 unsupported startup parameter: statement_timeout`): routers
 * could not load the topology nor watch it, and no admin command reached the catalog. Here a
 * loopback proxy checks each login as PgBouncer 1.18 does (the parameters it tracks, nothing else)
 * in front of the real catalog; every kind of catalog connection logs in through it.
 */
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { moveHistory } from '../../../src/admin/mover/move-control';
import { PGBOUNCER_STARTUP_PARAMETERS, startCatalogProxy, type CatalogProxy } from './catalog-proxy';
import { until } from '../replication/replication-fault-fixture';
import { directClient } from '../../support/direct-pool';
import { admin, withPassword } from './admin-cli-process';

let cluster: TestCluster;
let directUrl: string;
let proxy: CatalogProxy;
let v1: Topology;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1 });
  const [shard] = (await cluster.createDatabase('catalog_pooler')) as [TestShardUrls];
  directUrl = withPassword(shard.primaryUrl);
  proxy = await startCatalogProxy(Number(new URL(directUrl).port));
  proxy.refuseStartupParameters = true;
  v1 = createTopology({ shards: [{ id: 'shard0', primary: shard.primaryUrl }] });
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await cluster?.stop();
});

test('the proxy refuses a login as PgBouncer 1.18 does (the check itself can fail)', async () => {
  const client = directClient({ connectionString: proxy.via(directUrl), statement_timeout: 1000 });
  client.on('error', () => undefined);
  await expect(client.connect()).rejects.toMatchObject({ code: '08P01', message: 'unsupported startup parameter: statement_timeout' });
});

test('through a pooler that refuses unknown startup parameters: install, publish, latest, history, watch, the operator lock and the move store all log in and work', async () => {
  const catalog = new TopologyCatalog({ url: proxy.via(directUrl), reconnectDelayMillis: 50 });
  const seen: number[] = [];
  const logins = proxy.startups.length;
  try {
    await catalog.install();
    await catalog.publish(v1, 'through the pooler');
    expect((await catalog.latest())?.version).toBe(1);
    expect((await catalog.history()).map((h) => h.note)).toEqual(['through the pooler']);
    const watch = await catalog.watch((t) => seen.push(t.version));
    try {
      await catalog.withOperatorLock(async () => catalog.publish(v1.withSlotsMoved([0], 'shard0')));
      await until('version 2 delivered to the watch', () => seen.includes(2), 10_000);
    } finally {
      await watch.close();
    }
    const history = await moveHistory({ catalog: proxy.via(directUrl) });
    expect(history.error).toBeNull();
    expect(history.moves).toEqual([]);
  } finally {
    await catalog.close();
  }
  expect(seen).toEqual([1, 2]);
  const made = proxy.startups.slice(logins);
  console.log(JSON.stringify({ loginsThroughPooler: made.length, parameters: [...new Set(made.flatMap((p) => Object.keys(p)))] }));
  // The pool's connections, the watch's, the mover's pool: every login carried only what PgBouncer tracks.
  expect(made.length).toBeGreaterThanOrEqual(3);
  for (const parameters of made) for (const name of Object.keys(parameters)) expect(PGBOUNCER_STARTUP_PARAMETERS.has(name.toLowerCase())).toBe(true);
}, 60_000);

test('CLI status and moves through the pooler', async () => {
  const [status, moves] = await Promise.all([admin('status', '--no-live', '--catalog', proxy.via(directUrl)), admin('moves', '--catalog', proxy.via(directUrl))]);
  console.log(JSON.stringify({ status: status.stdout + status.stderr, moves: moves.stdout + moves.stderr }));
  expect(status.code).toBe(0);
  expect(status.stdout).toContain('topology version 2');
  expect(moves.code).toBe(0);
  expect(moves.stdout).toContain('No moves yet.');
}, 60_000);
