/**
 * A deadline on every replica read, and checks that do not wait for each other, on real servers:
 * with 16 readers and round-robin (a strategy that ignores load), freezing one replica of two
 * with SIGSTOP leaves reads flowing, none fails, none waits past its deadline (plus one retry);
 * the frozen replica leaves rotation at the first deadline, the other replica's checks keep their
 * own schedule, and the frozen one returns once it answers again. A replica killed with SIGKILL
 * costs no read either. Prints the figures (failed reads, p99/max latency, time to divert and to return).
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { roundRobin } from '../../../src/balancer/strategies/round-robin';
import { leastConnections } from '../../../src/balancer/strategies/least-connections';
import type { Strategy } from '../../../src/balancer/balancer-strategy';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { countedPool, freeze, kill9, ReaderLoad, ServerCounts, summary, until, replicatedShard } from './replication-fault-fixture';

interface DB {
  users: { id: number; name: string };
}

// The default deadline: this 2-core machine runs several test suites at once, where a plain read can take a second.
const READ_TIMEOUT = 2000;
const CHECK_INTERVAL = 250;
const CHECK_TIMEOUT = 1500;
const READERS = 16;
let cluster: TestCluster;
let shard: TestShardUrls;
const open: Kysely<DB>[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 2 });
  shard = await replicatedShard(cluster, 'replica_deadline', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, 'user ' || i from generate_series(1, 1000) i",
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.destroy()));
  await cluster?.stop();
});

async function connect(strategy: Strategy) {
  const reads = new ServerCounts((text) => text.includes('"users"'));
  const checks = new ServerCounts((text) => text.includes('pg_is_in_recovery()'));
  const topology = createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] });
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id' },
    replicas: { readFrom: 'replica', strategy, readTimeoutMillis: READ_TIMEOUT, lagCheckIntervalMillis: CHECK_INTERVAL, checkTimeoutMillis: CHECK_TIMEOUT },
    createPool: (server) => countedPool(server.url, [reads, checks]),
    onPoolError: () => undefined,
  });
  const events: (ReplicaEvent & { at: number })[] = [];
  dialect.onReplicaEvent((event) => events.push({ ...event, at: performance.now() }));
  const db = new Kysely<DB>({ dialect });
  open.push(db);
  await until('both replicas serving', () => dialect.replicaStatus().every((s) => s.eligible));
  const load = new ReaderLoad(READERS, async (reader, n) => {
    const id = ((reader * 7919 + n * 31) % 1000) + 1;
    const row = await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirst();
    if (row?.name !== `user ${id}`) throw Object.assign(new Error(`wrong row for ${id}`), { code: 'WRONG_ROW' });
  });
  return { db, dialect, reads, checks, events, load };
}

test('a frozen replica (SIGSTOP) under round-robin: 16 readers keep reading, no read fails or waits past its deadline, checks stay independent', async () => {
  const { dialect, checks, events, load } = await connect(roundRobin());
  const [frozenUrl, otherUrl] = shard.replicaUrls as [string, string];
  const [frozenName] = dialect.replicaStatus().map((s) => s.server) as [string, string];
  await until('a baseline of reads', () => load.records.length >= 500, 30_000);
  const baselineStart = load.records[0]!.at;
  const frozenAt = performance.now();
  const baselineRate = load.between(baselineStart, frozenAt).length / (frozenAt - baselineStart);
  const thaw = freeze(cluster.shards[0]!.replicas[0]!);
  let thawedAt = Infinity;
  try {
    const otherChecksBefore = checks.on(otherUrl);
    // The frozen replica is ejected by a read deadline; then 2 s more of reads with it frozen.
    const ejected = () => events.find((e) => e.server === frozenName && e.to === 'ejected' && e.at > frozenAt);
    await until('the frozen replica ejected', () => ejected() !== undefined);
    const ejectedAt = ejected()!.at;
    await until('2 s of reads with the replica frozen', () => performance.now() - frozenAt >= 2000 + (ejectedAt - frozenAt), 10_000);
    const frozenWindow = performance.now() - frozenAt;
    const otherChecks = checks.on(otherUrl) - otherChecksBefore;
    thawedAt = performance.now();
    thaw();

    const frozen = load.between(frozenAt, thawedAt);
    const frozenRate = frozen.length / frozenWindow;
    const figures = { ...summary(frozen), baselinePerSecond: Math.round(baselineRate * 1000), frozenPerSecond: Math.round(frozenRate * 1000), divertMillis: Math.round(ejectedAt - frozenAt), otherReplicaChecks: otherChecks, frozenWindowMillis: Math.round(frozenWindow) };
    console.log(`SIGSTOP one replica of two, round-robin, ${READERS} readers: ${JSON.stringify(figures)}`);

    expect(frozen.filter((r) => r.failed !== undefined)).toEqual([]);
    // No read waited on a replica past its deadline; the one retry elsewhere adds a normal read's time.
    expect(figures.maxMillis).toBeLessThan(2 * READ_TIMEOUT);
    // Reads kept flowing: the old router stalled every reader for the whole freeze (48 reads in 10 s).
    expect(frozenRate).toBeGreaterThan(baselineRate * 0.25);
    expect(figures.divertMillis).toBeLessThan(2 * READ_TIMEOUT);
    expect(ejected()!.reason).toContain(`readTimeoutMillis (${READ_TIMEOUT} ms)`);
    // The other replica's checks kept their own schedule while the frozen one's hung: more than one
    // round per interval plus timeout, which is all one shared round of checks would allow.
    expect(otherChecks).toBeGreaterThan(Math.ceil(frozenWindow / (CHECK_INTERVAL + CHECK_TIMEOUT)) + 1);
    expect(checks.on(frozenUrl)).toBeGreaterThan(0);
  } finally {
    thaw();
  }
  await until('the thawed replica serving again', () => events.some((e) => e.server === frozenName && e.to === 'serving' && e.at > thawedAt));
  const returnMillis = events.find((e) => e.server === frozenName && e.to === 'serving' && e.at > thawedAt)!.at - thawedAt;
  const afterThaw = performance.now();
  await until('reads after the return', () => load.between(afterThaw, Infinity).length >= 300, 30_000);
  await load.stop();
  console.log(`SIGSTOP: replica back in rotation ${Math.round(returnMillis)} ms after SIGCONT; all reads: ${JSON.stringify(summary(load.records))}`);
  expect(summary(load.records).failed).toBe(0);
  expect(dialect.replicaStatus().every((s) => s.eligible)).toBe(true);
}, 60_000);

test('a killed replica (SIGKILL) under least-connections: no read fails; it returns after a restart', async () => {
  const { dialect, events, load, reads } = await connect(leastConnections());
  const killedName = dialect.replicaStatus()[0]!.server;
  const killedUrl = shard.replicaUrls[0]!;
  await until('a baseline of reads', () => load.records.length >= 300, 30_000);
  const killedAt = performance.now();
  await kill9(cluster.shards[0]!.replicas[0]!);
  const out = () => events.find((e) => e.server === killedName && e.at > killedAt && (e.to === 'ejected' || e.to === 'unreachable'));
  await until('the killed replica out of rotation', () => out() !== undefined);
  const divertMillis = out()!.at - killedAt;
  await until('reads with the replica dead', () => load.between(killedAt, Infinity).length >= 600, 30_000);
  const restartAt = performance.now();
  await cluster.shards[0]!.replicas[0]!.start();
  await until('the restarted replica serving', () => events.some((e) => e.server === killedName && e.to === 'serving' && e.at > restartAt));
  const returnMillis = events.find((e) => e.server === killedName && e.to === 'serving' && e.at > restartAt)!.at - restartAt;
  reads.reset();
  await until('reads on the restarted replica', () => reads.on(killedUrl) > 50, 30_000);
  await load.stop();
  const during = load.between(killedAt, restartAt);
  console.log(`SIGKILL one replica of two, least-connections, ${READERS} readers: ${JSON.stringify({ ...summary(during), divertMillis: Math.round(divertMillis), returnMillisAfterStart: Math.round(returnMillis) })}`);
  expect(summary(load.records).failed).toBe(0);
  expect(summary(during).maxMillis).toBeLessThan(2 * READ_TIMEOUT);
}, 60_000);
