/**
 * A process whose only pending work is a read-your-writes read waiting for a replica to replay
 * (replay paused on the real replica) stays alive until the read settles: it prints the row and
 * exits 0 on its own. Before, the wait's only handles were unref'd timers and the process exited
 * silently, with code 0, in the middle of the await.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { withPg } from '../../support/postgres-replication';
import { replicatedShard } from './replication-fault-fixture';

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
  const dir = mkdtempSync(join(tmpdir(), 'kysely-scale-ryw-alive-'));
  const script = join(dir, 'ryw-read.ts');
  const src = (file: string) => JSON.stringify(resolve(__dirname, '../../../src', file));
  writeFileSync(
    script,
    `import { Kysely } from ${JSON.stringify(require.resolve('kysely'))};
import { ShardedDialect } from ${src('sharding/dialect/sharded-dialect')};
import { createTopology } from ${src('cluster/topology')};
import { ReadYourWritesContext } from ${src('replication/read-your-writes')};
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
  );
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: resolve(__dirname, '../../..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done) => child.on('exit', (c, s) => done([c, s])));
    clearTimeout(timer);
    console.log(`read-your-writes keep-alive: ${JSON.stringify({ stdout, code, signal })}`);
    expect({ stdout, code, signal, stderr: stderr.slice(0, 2000) }).toEqual({ stdout: 'read written\n', code: 0, signal: null, stderr: '' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
