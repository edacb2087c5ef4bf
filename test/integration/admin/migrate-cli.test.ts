import { join } from 'node:path';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { admin, SECRET, withPassword, type CliRun } from './admin-cli-process';

// `kysely-scale-admin migrate` and the migration column of `status`, on three shards listed in a catalog.
const folder = join(__dirname, 'migrations');
let cluster: TestCluster;
let catalogUrl: string;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 3 });
  catalogUrl = withPassword((await cluster.createDatabase('mig_cli_catalog'))[0]!.primaryUrl);
}, 60_000);

afterAll(() => cluster?.stop());

const shardArgs = (shards: readonly TestShardUrls[]): string[] => shards.flatMap((s) => ['--shard', `${s.id}=${withPassword(s.primaryUrl)}`]);
const noSecret = (...runs: CliRun[]): void => {
  for (const run of runs) expect(run.stdout + run.stderr).not.toContain(SECRET);
};

async function exec(url: string, text: string): Promise<void> {
  const client = directClient({ connectionString: url });
  await client.connect();
  await client.query(text).finally(() => client.end());
}

describe('kysely-scale-admin migrate and status', () => {
  test("migrate --catalog migrates every shard of the topology; status shows each shard's migration, then flags drift", async () => {
    const shards = await cluster.createDatabase('mig_cli_shards');
    const init = await admin('init', '--catalog', catalogUrl, ...shardArgs(shards));
    expect(init.code).toBe(0);

    const migrate = await admin('migrate', '--catalog', catalogUrl, '--folder', folder);
    expect(migrate.code).toBe(0);
    expect(migrate.stdout).toContain('All 3 shards migrated.');
    expect(migrate.stdout).toMatch(/shard1 {2}migrated {2}at 0003_orders \(ran 0001_users, ran 0002_accounts, ran 0003_orders\)/);
    // Each shard's line once, on stdout, as the shard finishes (not again as progress on stderr).
    expect(migrate.stderr).toBe('');
    for (const id of ['shard0', 'shard1', 'shard2']) expect(migrate.stdout.match(new RegExp(`^${id} `, 'gm'))).toHaveLength(1);
    expect(migrate.stdout.trim().split('\n')).toHaveLength(4);

    const status = await admin('status', '--catalog', catalogUrl);
    expect(status.code).toBe(0);
    expect(status.stdout.match(/migration 0003_orders/g)).toHaveLength(3);
    expect(status.stdout).not.toContain('DRIFT');

    // One shard taken back down to the first migration: the shards now disagree.
    const down = await admin('migrate', '--shard', `shard2=${withPassword(shards[2]!.primaryUrl)}`, '--folder', folder, '--to', '0001_users');
    expect(down.code).toBe(0);
    const drifted = await admin('status', '--catalog', catalogUrl);
    expect(drifted.code).toBe(1);
    expect(drifted.stdout).toMatch(/shard2 .* migration 0001_users — DRIFT: lacks 0002_accounts, 0003_orders/);
    expect(drifted.stdout).toContain('Migrations drifted');
    const json = JSON.parse((await admin('status', '--catalog', catalogUrl, '--json')).stdout) as { migrations: { drift: boolean; shards: { shardId: string; latest: string; missing: string[] }[] } };
    expect(json.migrations.drift).toBe(true);
    expect(json.migrations.shards.map((s) => [s.shardId, s.latest, s.missing])).toEqual([
      ['shard0', '0003_orders', []],
      ['shard1', '0003_orders', []],
      ['shard2', '0001_users', ['0002_accounts', '0003_orders']],
    ]);
    noSecret(init, migrate, status, down, drifted);
  }, 90_000);

  test('a migration failing on one shard: exit 1, the shard and migration named, later shards skipped (--json)', async () => {
    const shards = await cluster.createDatabase('mig_cli_fail');
    await exec(shards[0]!.primaryUrl, 'create table accounts (id int)');
    const run = await admin('migrate', ...shardArgs(shards), '--folder', folder, '--json');
    expect(run.code).toBe(1);
    const result = JSON.parse(run.stdout) as { ok: boolean; failedShard: string; error: { code: string }; shards: { shardId: string; status: string; current: string | null }[] };
    expect(result).toMatchObject({ ok: false, failedShard: 'shard0', error: { code: '42P07' } });
    expect(result.shards.map((s) => [s.shardId, s.status, s.current])).toEqual([
      ['shard0', 'failed', null],
      ['shard1', 'skipped', null],
      ['shard2', 'skipped', null],
    ]);
    // With --json, stdout is the JSON alone and the shard lines are progress on stderr.
    expect(run.stderr.trim().split('\n')).toHaveLength(3);
    // The code first, as every command prints a failure.
    expect(run.stderr).toMatch(/shard0 {2}FAILED {4}at \(none\); migration 0002_accounts failed: 42P07: relation "accounts" already exists\n/);
    noSecret(run);
  }, 60_000);

  test('a catalog that cannot be reached: the code first, then the message, then what to do (as the other commands print failures)', async () => {
    const run = await admin('migrate', '--catalog', withPassword('postgres://admin@127.0.0.1:1/catalog'), '--folder', folder);
    expect(run.code).toBe(1);
    expect(run.stdout.trim().split('\n')).toEqual([expect.stringMatching(/^ECONNREFUSED: catalog postgres:\/\/admin:\*+@127\.0\.0\.1:1\/catalog: /), 'Nothing migrated: fix the cause and run migrate again.']);
    noSecret(run);
  }, 30_000);

  test('usage errors: no folder, no shards, both --catalog and --shard', async () => {
    const noFolder = await admin('migrate', '--catalog', catalogUrl);
    expect(noFolder.code).toBe(2);
    expect(noFolder.stderr).toMatch(/^migrate needs --folder/);
    const noShards = await admin('migrate', '--folder', folder);
    expect(noShards.code).toBe(2);
    expect(noShards.stderr).toMatch(/--catalog <url> \(or KYSELY_SCALE_CATALOG\), or the shards/);
    const both = await admin('migrate', '--catalog', catalogUrl, '--shard', `a=${catalogUrl}`, '--folder', folder);
    expect(both.code).toBe(2);
    noSecret(noFolder, noShards, both);
  }, 60_000);
});
