import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';

// `npm run demo` against a cluster it did not start (KYSELY_SCALE_SHARDS) must not drop tables
// that are already there unless told to with --force.
const repoRoot = resolve(__dirname, '../../..');
let cluster: TestCluster;
let shards: readonly TestShardUrls[];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2, replicasPerShard: 1 });
  shards = await cluster.createDatabase('demo_existing');
}, 60_000);

afterAll(() => cluster?.stop());

function demo(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    KYSELY_SCALE_SHARDS: shards.map((s) => s.primaryUrl).join(','),
    KYSELY_SCALE_REPLICAS: shards.map((s) => s.replicaUrls[0]!).join(','),
  };
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(repoRoot, 'examples/demo.ts'), ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((done) => child.on('exit', (code) => done({ code, stdout, stderr })));
}

async function query(url: string, text: string): Promise<unknown[]> {
  const client = directClient({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

test('the demo refuses to drop existing tables on a cluster it did not start, and does with --force', async () => {
  await query(shards[1]!.primaryUrl, "create table users (id bigint primary key, name text not null); insert into users values (1, 'kept')");

  const refused = await demo();
  expect(refused.code).toBe(2);
  expect(refused.stderr).toContain('a cluster the demo did not start');
  expect(refused.stderr).toContain(`shard1 (${shards[1]!.primaryUrl}): users`);
  expect(refused.stderr).toContain('npm run demo -- --force');
  expect(await query(shards[1]!.primaryUrl, 'select name from users')).toEqual([{ name: 'kept' }]);

  const forced = await demo('--force');
  expect(forced.stderr).toBe('');
  expect(forced.code).toBe(0);
  expect(forced.stdout).toContain('Done.');
  expect(await query(shards[1]!.primaryUrl, "select name from users where name = 'kept'")).toEqual([]);
}, 120_000);
