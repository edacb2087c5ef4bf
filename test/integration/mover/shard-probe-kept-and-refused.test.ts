/**
 * Two findings of review 50 on the deadline probe's kept connection and its "refused = alive" rule.
 * One server; 1 s statement deadlines.
 * - A kept probe connection that went stale (a NAT or firewall forgot it; here its own backend is
 *   stopped with SIGSTOP, the shard otherwise healthy) is dropped and a new connection asks before
 *   the shard is called silent: a healthy statement completes. With the whole server frozen the
 *   message says which connection failed: the kept one, then a new one.
 * - A probe refused at every try (a role at CONNECTION LIMIT 1, the only slot taken by the
 *   session's own backend whose replies are dropped) does not keep the mover waiting without bound:
 *   after UNINSPECTED_DEADLINES × the deadline with no progress it fails with ShardSilentError,
 *   "could not be inspected", naming the option to raise.
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession, type ShardSession } from '../../../src/admin/mover/shard-session';
import { PROBE_APPLICATION_NAME } from '../../../src/admin/mover/shard-liveness';
import { UNINSPECTED_DEADLINES } from '../../../src/admin/mover/shard-watchdog';
import { ShardSilentError } from '../../../src/admin/mover/mover-errors';
import { freeze } from '../replication/replication-fault-fixture';
import { startTcpProxy } from '../../support/tcp-proxy';
import { outcome, within } from './within-deadline';

let cluster: TestCluster;
let url: URL;
let admin: Client;
const opened: ShardSession[] = [];

async function session(u: string): Promise<ShardSession> {
  const s = await openShardSession(u, 5000, { shard: 's', deadlines: { statementTimeoutMillis: 1000, copyIdleTimeoutMillis: 1000 } });
  opened.push(s);
  return s;
}


async function probePids(): Promise<number[]> {
  return (await admin.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = $1`, [PROBE_APPLICATION_NAME])).rows.map((r) => r.pid);
}

/** A session whose probe connection was opened by a 1.6 s statement (a probe at 1 s) and kept: its backend's pid. */
async function sessionWithKeptProbe(): Promise<{ s: ShardSession; probePid: number }> {
  const before = new Set(await probePids());
  const s = await session(url.toString());
  expect((await outcome('warm', s.client.query('select pg_sleep(1.6)'))).error).toBeUndefined();
  const kept = (await probePids()).filter((pid) => !before.has(pid));
  expect(kept).toHaveLength(1);
  return { s, probePid: kept[0]! };
}

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('probe_kept_refused');
  url = new URL(shard!.primaryUrl);
  admin = directClient(url.toString());
  await admin.connect();
  await admin.query(`create role mover_one login password 'Pw_mover_one_S3cret' connection limit 1`);
}, 60_000);

afterAll(async () => {
  for (const s of opened) s.destroy();
  await admin?.end();
  await cluster?.stop();
});

test('a kept probe connection gone stale (its backend stopped, the shard healthy) is replaced by a new one: a healthy 3 s statement completes', async () => {
  const { s, probePid } = await sessionWithKeptProbe();
  process.kill(probePid, 'SIGSTOP');
  try {
    const { ms, error } = await outcome('staleKeptProbe', s.client.query('select pg_sleep(3)'));
    expect(error).toBeUndefined();
    expect(ms).toBeGreaterThanOrEqual(2950); // ran to its end (pg_sleep times on the server's wall clock: a few ms short on ours)
    // The stale connection was dropped; a new one is kept in its place.
    const now = await probePids();
    expect(now).toContain(probePid); // stopped, its backend has not seen the socket close yet
    expect(now.filter((pid) => pid !== probePid)).toHaveLength(1);
  } finally {
    process.kill(probePid, 'SIGCONT');
  }
  await s.close();
});

test('the whole server frozen while a probe connection is kept: silent, and the message says the kept connection got no answer and a new one failed too', async () => {
  const { s } = await sessionWithKeptProbe();
  const thaw = freeze(cluster.shards[0]!.primary);
  let result: { ms: number; error: Error | undefined };
  try {
    result = await outcome('frozenWithKeptProbe', s.client.query('select 1'));
  } finally {
    thaw();
  }
  expect(result.error).toBeInstanceOf(ShardSilentError);
  expect(result.error!.message).toMatch(
    /^Shard "s" did not answer a statement \("select \?"\) within 1000 ms \(statementTimeoutMillis, --statement-timeout-ms\), and its kept probe connection got no answer \(no answer to the question in 1000 ms\); a new connection to it failed too \(no answer to the login in 500 ms\): the shard is frozen, overloaded or unreachable\. /,
  );
  // The deadline and one probe's time: the kept connection asks for all of it, a new one from its half.
  expect(result.ms).toBeGreaterThanOrEqual(2000 - 50);
  expect(result.ms).toBeLessThan(3500);
});

test('every probe refused (CONNECTION LIMIT 1, the slot taken by the session whose replies are dropped): the wait stops after UNINSPECTED_DEADLINES deadlines, "could not be inspected"', async () => {
  const proxy = await startTcpProxy(Number(url.port));
  const via = new URL(url);
  via.username = 'mover_one';
  via.password = 'Pw_mover_one_S3cret';
  via.hostname = '127.0.0.1';
  via.port = String(proxy.port);
  try {
    const s = await session(via.toString());
    proxy.stallReplies();
    const { ms, error } = await outcome('droppedPathLimit1', s.client.query('select pg_sleep(0.2)'), 20_000);
    expect(error).toBeInstanceOf(ShardSilentError);
    expect(error!.message).toMatch(
      /^Shard "s" did not answer a statement \("select pg_sleep\(\?\)"\) within 1000 ms \(statementTimeoutMillis, --statement-timeout-ms\), and the shard answered but could not be asked about its backend \(pid \d+\): .*too many connections for role "mover_one" \(53300\); the shard could not be inspected for \d+ ms \(5 × statementTimeoutMillis\) .*raise statementTimeoutMillis/,
    );
    expect(error!.message).not.toContain('Pw_mover_one_S3cret');
    expect(ms).toBeGreaterThanOrEqual(UNINSPECTED_DEADLINES * 1000);
    expect(ms).toBeLessThan(UNINSPECTED_DEADLINES * 1000 + 2500);
  } finally {
    const stranded = await admin.query<{ pid: number }>(`select pid from pg_stat_activity where usename = 'mover_one'`);
    for (const row of stranded.rows) await admin.query('select pg_terminate_backend($1)', [row.pid]);
    await proxy.close();
  }
});
