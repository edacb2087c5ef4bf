/**
 * Live status on a real cluster (two shards with a streaming replica each, a catalog): every
 * server is asked now (reachable, role, lag in bytes and seconds), with slots, a row estimate and
 * the latest migration per shard; a stopped replica is reported unreachable within the deadline,
 * never waited for; `kysely-scale-admin status` prints it (exit 1 on a problem, `--json`,
 * `--watch`) without ever showing a password.
 */
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { initCatalog } from '../../../src/admin/admin-commands';
import { liveStatus } from '../../../src/admin/live-status';
import { admin, SECRET, withPassword } from '../admin/admin-cli-process';
import { waitForReplay } from '../../support/postgres-replication';
import { directPool } from '../../support/direct-pool';

let cluster: TestCluster;
let shards: readonly TestShardUrls[];
let catalogUrl: string;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2, replicasPerShard: 1 });
  shards = await cluster.createDatabase('live_status');
  const [catalogShard] = await cluster.createDatabase('live_status_catalog');
  catalogUrl = withPassword(catalogShard!.primaryUrl);
  for (const [i, s] of shards.entries()) {
    const pool = directPool({ connectionString: s.primaryUrl });
    await pool.query('create table users (id integer primary key, name text not null)');
    await pool.query(`insert into users select g, 'u' || g from generate_series(1, ${1000 * (i + 1)}) g`);
    await pool.query('analyze users');
    await pool.end();
    await waitForReplay(s.primaryUrl, s.replicaUrls[0]!);
  }
  await initCatalog(
    catalogUrl,
    shards.map((s) => ({ id: s.id, primary: withPassword(s.primaryUrl), replicas: s.replicaUrls.map(withPassword) })),
  );
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('live status', () => {
  it('asks every server: reachable, role as the topology says, replica lag, slots and rows', async () => {
    const status = await liveStatus(catalogUrl, { timeoutMillis: 2000 });
    expect(status.error).toBeNull();
    expect(status.problems).toEqual([]);
    expect(status.version).toBe(1);
    expect(status.shards.map((s) => [s.id, s.slots, s.slotRanges])).toEqual([
      [shards[0]!.id, 2048, '0-2047'],
      [shards[1]!.id, 2048, '2048-4095'],
    ]);
    expect(status.shards.map((s) => s.rowEstimate)).toEqual([1000, 2000]);
    for (const shard of status.shards) {
      expect(shard.servers.map((s) => [s.role, s.reachable, s.roleMatches, s.inRecovery])).toEqual([
        ['primary', true, true, false],
        ['replica', true, true, true],
      ]);
      const replica = shard.servers[1]!;
      expect(replica.lagBytes).toBeGreaterThanOrEqual(0);
      expect(replica.lagSeconds).toBeGreaterThanOrEqual(0);
      expect(replica.server).toContain(':***@');
    }
    expect(JSON.stringify(status)).not.toContain(SECRET);
  });

  it('reports a stopped replica unreachable within the deadline, and the CLI exits 1 naming it', async () => {
    const replica = cluster.shards[1]!.replicas[0]!;
    await replica.stop();
    try {
      const started = performance.now();
      const status = await liveStatus(catalogUrl, { timeoutMillis: 1000 });
      expect(performance.now() - started).toBeLessThan(5000);
      const server = status.shards[1]!.servers[1]!;
      expect(server).toMatchObject({ role: 'replica', reachable: false, lagBytes: null });
      expect(server.error).toMatch(/ECONNREFUSED|connect|terminat/i);
      expect(status.problems).toEqual([expect.stringMatching(new RegExp(`^${shards[1]!.id} replica postgres://postgres:\\*\\*\\*@.* is unreachable`))]);

      const cli = await admin('status', '--catalog', catalogUrl, '--json', '--timeout', '1000');
      expect(cli.code).toBe(1);
      const parsed = JSON.parse(cli.stdout) as { version: number; live: { shards: { servers: { reachable: boolean }[] }[] } };
      expect(parsed.version).toBe(1);
      expect(parsed.live.shards.map((s) => s.servers.map((x) => x.reachable))).toEqual([
        [true, true],
        [true, false],
      ]);
      const text = await admin('status', '--catalog', catalogUrl, '--timeout', '1000');
      expect(text.stdout).toMatch(/replica\s+postgres:\/\/postgres:\*\*\*@\S+\s+UNREACHABLE/);
      expect(text.stdout).toMatch(/Problems:/);
      for (const run of [cli, text]) expect(run.stdout + run.stderr).not.toContain(SECRET);
    } finally {
      await replica.start();
    }
  }, 60_000);

  it('prints a round per interval with --watch, and stops after --count rounds', async () => {
    const run = await admin('status', '--catalog', catalogUrl, '--watch', '--interval', '1', '--count', '2', '--json');
    expect(run.code).toBe(0);
    const rounds = run.stdout.trim().split('\n').filter((l) => l.startsWith('{"'));
    // The first round is one JSON line; the last is the CLI's pretty-printed result.
    expect(rounds).toHaveLength(1);
    expect(run.stdout.match(/"checkedAt"/g)).toHaveLength(2);
  }, 60_000);
});
