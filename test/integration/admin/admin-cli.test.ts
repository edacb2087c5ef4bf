import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { admin, SECRET, withPassword } from './admin-cli-process';

// The CLI runs as operators run it, a separate process; the catalog and shard URLs carry a password
// (trust authentication ignores it) that must never be printed.
let cluster: TestCluster;
let catalogUrl: string;
let shards: readonly TestShardUrls[];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2 });
  shards = await cluster.createDatabase('cli_shards');
  catalogUrl = withPassword((await cluster.createDatabase('cli_catalog'))[0]!.primaryUrl);
}, 60_000);

afterAll(() => cluster?.stop());

describe('kysely-scale-admin', () => {
  test('status of an empty catalog, init, status, and init again refused; no password printed', async () => {
    const empty = await admin('status', '--catalog', catalogUrl);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toContain('no topology published yet');

    const shardArgs = shards.flatMap((s) => ['--shard', `${s.id}=${withPassword(s.primaryUrl)}`]);
    const init = await admin('init', '--catalog', catalogUrl, ...shardArgs);
    expect(init).toMatchObject({ code: 0, stderr: '' });
    expect(init.stdout).toMatch(/published topology version 1 \(2 shards, 4096 slots\)/);

    const status = await admin('status', '--catalog', catalogUrl, '--json');
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout) as { version: number; shards: { id: string; slots: number; primary: string }[]; history: { version: number; note: string }[] };
    expect(parsed.version).toBe(1);
    expect(parsed.shards.map((s) => [s.id, s.slots])).toEqual([
      [shards[0]!.id, 2048],
      [shards[1]!.id, 2048],
    ]);
    expect(parsed.shards[0]!.primary).toContain(':***@');
    expect(parsed.history.map((h) => [h.version, h.note])).toEqual([[1, 'init']]);

    const again = await admin('init', '--catalog', catalogUrl, ...shardArgs);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^E_TOPOLOGY_CONFLICT: The catalog already holds topology version 1/);

    for (const run of [empty, init, status, again]) expect(run.stdout + run.stderr).not.toContain(SECRET);
  }, 60_000);

  test('bad usage exits 2 with the usage text; an unreachable catalog exits 1 with a redacted message', async () => {
    const noCommand = await admin('--catalog', catalogUrl);
    expect(noCommand.code).toBe(2);
    expect(noCommand.stderr).toContain('Usage: kysely-scale-admin');
    const badShard = await admin('init', '--catalog', catalogUrl, '--shard', `x`);
    expect(badShard.code).toBe(2);
    expect(badShard.stderr).toMatch(/--shard`?:? takes id=primaryUrl/);
    const badSlots = await admin('init', '--catalog', catalogUrl, '--shard', `a=${catalogUrl}`, '--slots', 'abc');
    expect(badSlots.code).toBe(2);
    const badHeartbeat = await admin('move', '--catalog', catalogUrl, '--slots', '0-9', '--to', 'shard1', '--lock-heartbeat-ms', '0');
    expect(badHeartbeat.code).toBe(2);
    expect(badHeartbeat.stderr).toMatch(/--lock-heartbeat-ms/);
    // abort takes the tuning flags too (review 66), not --dry-run.
    expect((await admin('abort', '--help')).stdout).toContain('--lock-heartbeat-ms');
    const abortDryRun = await admin('abort', '--catalog', catalogUrl, '--dry-run');
    expect(abortDryRun.code).toBe(2);
    // A URL pasted where the command belongs is quoted back redacted.
    const urlAsCommand = await admin(`postgres://postgres:${SECRET}@127.0.0.1:1/db`, '--catalog', catalogUrl);
    expect(urlAsCommand.code).toBe(2);
    expect(urlAsCommand.stderr).toContain('Unknown command "postgres://postgres:***@127.0.0.1:1/db"');
    const unreachable = await admin('status', '--catalog', `postgres://postgres:${SECRET}@127.0.0.1:1/nothing`);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/ECONNREFUSED/);
    expect(unreachable.stderr).toContain('catalog postgres://postgres:***@127.0.0.1:1/nothing');
    // With --json a failure is JSON on stdout too.
    const unreachableJson = await admin('status', '--json', '--catalog', `postgres://postgres:${SECRET}@127.0.0.1:1/nothing`);
    expect(unreachableJson.code).toBe(1);
    expect(JSON.parse(unreachableJson.stdout)).toMatchObject({ ok: false, error: { code: 'ECONNREFUSED', message: expect.stringContaining('postgres://postgres:***@127.0.0.1:1/nothing') } });
    // A command's usage error names the reason and its help, without the whole usage text after it.
    expect(badShard.stderr).toContain('Run `kysely-scale-admin init --help` for its options.');
    expect(badShard.stderr).not.toContain('Usage: kysely-scale-admin');
    for (const run of [noCommand, badShard, badSlots, badHeartbeat, abortDryRun, urlAsCommand, unreachable, unreachableJson]) expect(run.stdout + run.stderr).not.toContain(SECRET);
  }, 60_000);

  test('-h, --help and --version answer without a catalog; an unknown command is a usage error, not a missing --catalog', async () => {
    const help = await admin('-h');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: kysely-scale-admin <command>');
    expect(help.stdout).toMatch(/\n  init\s/);
    const longHelp = await admin('status', '--help');
    expect(longHelp.code).toBe(0);
    const version = await admin('--version');
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toBe((require('../../../package.json') as { version: string }).version);
    const bogus = await admin('bogus');
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toMatch(/^Unknown command "bogus"/);
    const unknownFlag = await admin('status', '--catalog', catalogUrl, '--histroy', '3');
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toMatch(/--histroy/);
  }, 60_000);
});
