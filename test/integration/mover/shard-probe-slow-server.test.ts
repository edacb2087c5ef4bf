/**
 * Review 51, finding 2: a live server slow to answer, whose open connections answer late and whose
 * new connections stall longer still (an overloaded server), is not called silent while the
 * session's kept probe connection answers within the probe's time. The kept connection asks for the
 * whole probe time; from half of it a new connection asks as well (the kept one may have gone
 * stale: shard-probe-kept-and-refused), and the first answer counts. Before: the kept connection
 * was dropped at half the probe time and the new one had only the rest: ShardSilentError at 2.0 s.
 * One server; 1 s statement deadlines (probe time 1 s). Simulated with SIGSTOP: the kept probe's
 * backend stopped for 1.7 s from the statement's start (the probe asks at ~1.0 s: its answer comes
 * ~0.7 s later), the postmaster for 2.6 s (no new connection before).
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession, type ShardSession } from '../../../src/admin/mover/shard-session';
import { PROBE_APPLICATION_NAME } from '../../../src/admin/mover/shard-liveness';
import { outcome } from './within-deadline';

let cluster: TestCluster;
let url: URL;
let admin: Client;
const opened: ShardSession[] = [];

async function probePids(): Promise<number[]> {
  return (await admin.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = $1`, [PROBE_APPLICATION_NAME])).rows.map((r) => r.pid);
}

/** Sends SIGCONT to `pid` (once; a process gone is fine). */
function resume(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    // gone
  }
}

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('probe_slow_server');
  url = new URL(shard!.primaryUrl);
  admin = directClient(url.toString());
  await admin.connect();
}, 60_000);

afterAll(async () => {
  for (const s of opened) s.destroy();
  await admin?.end();
  await cluster?.stop();
});

test('the kept probe connection answers after 0.7 s of its 1 s while new connections stall 1.6 s: a healthy 4 s statement completes, the kept connection stays', async () => {
  const s = await openShardSession(url.toString(), 5000, { shard: 's', deadlines: { statementTimeoutMillis: 1000, copyIdleTimeoutMillis: 1000 } });
  opened.push(s);
  const before = new Set(await probePids());
  expect((await outcome('warm', s.client.query('select pg_sleep(1.6)'))).error).toBeUndefined();
  const kept = (await probePids()).filter((pid) => !before.has(pid));
  expect(kept).toHaveLength(1);
  const probePid = kept[0]!;
  const postmaster = cluster.shards[0]!.primary.pid!;
  const running = s.client.query('select pg_sleep(4)');
  process.kill(probePid, 'SIGSTOP');
  process.kill(postmaster, 'SIGSTOP');
  const timers = [setTimeout(() => resume(probePid), 1700), setTimeout(() => resume(postmaster), 2600)];
  try {
    const { ms, error } = await outcome('slowServer', running, 20_000);
    expect(error).toBeUndefined();
    expect(ms).toBeGreaterThanOrEqual(3950); // ran to its end (pg_sleep times on the server's wall clock: a few ms short on ours)
  } finally {
    for (const timer of timers) clearTimeout(timer);
    resume(probePid);
    resume(postmaster);
  }
  // The kept connection answered first: it is still the session's probe connection.
  expect(await probePids()).toContain(probePid);
  await s.close();
}, 60_000);
