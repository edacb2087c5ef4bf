/**
 * A process whose only pending work is a read-your-writes read waiting for a replica to replay
 * (replay paused on the real replica) stays alive until the read settles: it prints the row and
 * exits 0 on its own. Before, the wait's only handles were unref'd timers and the process exited
 * silently, with code 0, in the middle of the await.
 */
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { withPg } from '../../support/postgres-replication';
import { replicatedShard } from './replication-fault-fixture';
import { runTsxScript, srcModule } from '../../support/tsx-script';

let cluster: TestCluster;
let shard: TestShardUrls;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 1 });
  shard = await replicatedShard(cluster, 'ryw_keeps_alive', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, 'user ' || i from generate_series(1, 10) i",
  ]);
}, 60_000);

afterAll(async () => {
  await withPg(shard.replicaUrls[0]!, (c) => c.query('select pg_wal_replay_resume()')).catch(() => undefined);
  await cluster?.stop();
});

test('a read-your-writes read waiting for replay keeps the process alive until it settles', async () => {
  await withPg(shard.replicaUrls[0]!, (c) => c.query('select pg_wal_replay_pause()'));
  const { stdout, stderr, code, signal } = await runTsxScript(
    `import { Kysely } from ${JSON.stringify(require.resolve('kysely'))};
import { ShardedDialect } from ${srcModule('sharding/dialect/sharded-dialect')};
import { createTopology } from ${srcModule('cluster/topology')};
import { ReadYourWritesContext } from ${srcModule('replication/read-your-writes')};
const topology = createTopology(${JSON.stringify({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] })});
const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, replicas: { readFrom: 'replica', lagCheckIntervalMillis: 0, replayWaitMillis: 1500 } });
const db = new Kysely<any>({ dialect });
void (async () => {
  await dialect.refreshReplicas();
  const context = new ReadYourWritesContext();
  await dialect.readYourWrites(() => db.updateTable('users').set({ name: 'written' }).where('id', '=', 1).execute(), context);
  const row = await dialect.readYourWrites(() => db.selectFrom('users').select('name').where('id', '=', 1).executeTakeFirst(), context);
  process.stdout.write('read ' + row?.name + '\\n');
})();
`,
    45_000,
  );
  console.log(`read-your-writes keep-alive: ${JSON.stringify({ stdout, code, signal })}`);
  expect({ stdout, code, signal, stderr: stderr.slice(0, 2000) }).toEqual({ stdout: 'read written\n', code: 0, signal: null, stderr: '' });
}, 60_000);
