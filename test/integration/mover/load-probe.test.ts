/**
 * The mover's load probe on servers that do not answer: a probe that misses its deadline drops
 * its session (it used to stay open until the move ended, one more per timeout, and closing the
 * move then waited on the hung backend), and a probe that cannot connect counts as slow instead
 * of failing the stream it paces.
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { MoveContext, MOVE_TUNING_DEFAULTS, PROBE_DEADLINE_MILLIS } from '../../../src/admin/mover/move-context';
import { MOVER_APPLICATION_NAME } from '../../../src/admin/mover/shard-session';
import type { TopologyCatalog } from '../../../src/admin/topology-catalog';
import type { MoveStore } from '../../../src/admin/mover/move-store';
import type { MoveRecord } from '../../../src/admin/mover/move-record';
import { createTopology } from '../../../src/cluster/topology';
import { systemClock } from '../../../src/kernel/clock';

let cluster: TestCluster;
let url: string;
let watch: Client;
const stopped: number[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('load_probe');
  url = shard!.primaryUrl;
  watch = directClient(url);
  await watch.connect();
}, 60_000);

afterAll(async () => {
  for (const pid of stopped) process.kill(pid, 'SIGCONT');
  await watch?.end();
  await cluster?.stop();
});

const context = (): MoveContext =>
  new MoveContext({} as TopologyCatalog, {} as MoveStore, { id: 1 } as MoveRecord, MOVE_TUNING_DEFAULTS, systemClock, () => undefined, undefined, new AbortController().signal);

async function moverPids(): Promise<number[]> {
  const { rows } = await watch.query<{ pid: number }>('select pid from pg_stat_activity where application_name = $1 and pid <> pg_backend_pid()', [MOVER_APPLICATION_NAME]);
  return rows.map((r) => r.pid);
}

/** How `promise` settled, or 'still waiting' once `millis` passed. */
function settled(promise: Promise<unknown>, millis: number): Promise<'resolved' | 'rejected' | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still waiting'>((resolve) => (timer = setTimeout(() => resolve('still waiting'), millis)));
  return Promise.race([promise.then(() => 'resolved' as const, () => 'rejected' as const), late]).finally(() => clearTimeout(timer));
}

test('a probe that misses its deadline counts as slow and drops its session; the next probe answers on a new one; closing does not wait on the hung backend', async () => {
  const ctx = context();
  const probe = ctx.pace(['shard0'], createTopology({ shards: [{ id: 'shard0', primary: url, replicas: [] }] })).probe!;
  try {
    expect(await probe(PROBE_DEADLINE_MILLIS)).toBeLessThan(PROBE_DEADLINE_MILLIS);
    const [hung] = await moverPids();
    process.kill(hung!, 'SIGSTOP'); // accepts bytes, never answers
    stopped.push(hung!);
    expect(await probe(PROBE_DEADLINE_MILLIS)).toBe(PROBE_DEADLINE_MILLIS);
    expect(await probe(PROBE_DEADLINE_MILLIS)).toBeLessThan(PROBE_DEADLINE_MILLIS);
  } finally {
    // The old code kept the hung session and end() waited on it forever.
    expect(await settled(ctx.close(), 3000)).toBe('resolved');
  }
});

test('a probe that cannot connect counts as slow instead of throwing', async () => {
  const ctx = context();
  const unreachable = createTopology({ shards: [{ id: 'shard0', primary: 'postgres://postgres:secret@127.0.0.1:1/none', replicas: [] }] });
  try {
    expect(await ctx.pace(['shard0'], unreachable).probe!(PROBE_DEADLINE_MILLIS)).toBe(PROBE_DEADLINE_MILLIS);
  } finally {
    await ctx.close();
  }
});

test('probeSlowMillis 0 switches the probe off', () => {
  const ctx = new MoveContext({} as TopologyCatalog, {} as MoveStore, { id: 1 } as MoveRecord, { ...MOVE_TUNING_DEFAULTS, probeSlowMillis: 0 }, systemClock, () => undefined, undefined, new AbortController().signal);
  expect(ctx.pace(['shard0'], createTopology({ shards: [{ id: 'shard0', primary: url, replicas: [] }] })).probe).toBeUndefined();
});
