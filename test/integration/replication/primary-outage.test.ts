/**
 * Reads while a primary is down, on real servers: the primary is killed (SIGKILL) under 8 plain
 * readers and 4 read-your-writes callers, and started again. While it is down, replicas serve every
 * plain read (their data within maxLagMillis of the primary's last sighting), writes fail at once
 * with E_PRIMARY_UNAVAILABLE naming the shard, and a read-your-writes read either sees the caller's
 * last write or fails with a coded, retryable error, never stale. Once the primary is back, writes
 * succeed again on the same dialect. Prints the figures.
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ReadYourWritesContext } from '../../../src/replication/read-your-writes';
import { ErrorCodes } from '../../../src/kernel/errors';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { countedPool, kill9, percentile, ReaderLoad, ServerCounts, summary, until, replicatedShard } from './replication-fault-fixture';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
let db: Kysely<DB>;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 2 });
  shard = await replicatedShard(cluster, 'primary_outage', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, '0' from generate_series(1, 1000) i",
  ]);
}, 60_000);

afterAll(async () => {
  await db?.destroy();
  await cluster?.stop();
});

interface WriteRecord {
  readonly at: number;
  readonly millis: number;
  readonly code: string | undefined;
  readonly shardId: unknown;
}

test('a killed primary: replicas serve every plain read, writes fail fast with a coded error, read-your-writes is never stale; the same dialect writes again once it is back', async () => {
  const counts = new ServerCounts((text) => text.includes('"users"'));
  const topology = createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] });
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id' },
    replicas: { readFrom: 'replica', lagCheckIntervalMillis: 250, checkTimeoutMillis: 1000 },
    createPool: (server) => countedPool(server.url, counts),
    onPoolError: () => undefined,
  });
  const events: (ReplicaEvent & { at: number })[] = [];
  dialect.onReplicaEvent((event) => events.push({ ...event, at: performance.now() }));
  db = new Kysely<DB>({ dialect });
  await until('both replicas serving', () => dialect.replicaStatus().every((s) => s.eligible));

  const plain = new ReaderLoad(8, async (reader, n) => {
    const id = ((reader * 7919 + n * 31) % 1000) + 1;
    if ((await db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirst()) === undefined) throw Object.assign(new Error('no row'), { code: 'NO_ROW' });
  });
  // Read-your-writes callers: each writes its own row's counter, then reads it back in the same context.
  const writes: WriteRecord[] = [];
  const rywErrors: string[] = [];
  let stale = 0;
  let rywReads = 0;
  let running = true;
  const callers = Array.from({ length: 4 }, async (_, caller) => {
    const id = 2000 + caller;
    await db.insertInto('users').values({ id, name: '0' }).execute();
    const context = new ReadYourWritesContext();
    let written = 0;
    for (let k = 1; running; k++) {
      const at = performance.now();
      try {
        await dialect.readYourWrites(() => db.updateTable('users').set({ name: String(k) }).where('id', '=', id).execute(), context);
        written = k;
        writes.push({ at, millis: performance.now() - at, code: undefined, shardId: undefined });
      } catch (error) {
        const e = error as { code?: string; context?: { shardId?: unknown } };
        writes.push({ at, millis: performance.now() - at, code: String(e.code), shardId: e.context?.shardId });
        await new Promise((resolve) => setImmediate(resolve));
      }
      try {
        const row = await dialect.readYourWrites(() => db.selectFrom('users').select('name').where('id', '=', id).executeTakeFirstOrThrow(), context);
        rywReads++;
        if (Number(row.name) < written) stale++;
      } catch (error) {
        rywErrors.push(String((error as { code?: unknown }).code));
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  });

  await until('a baseline of reads and writes', () => plain.records.length >= 500 && writes.length >= 100);
  const killedAt = performance.now();
  await kill9(cluster.shards[0]!.primary);
  await until('the primary marked down', () => events.some((e) => e.role === 'primary' && e.to === 'down'));
  const downAt = events.find((e) => e.role === 'primary' && e.to === 'down')!.at;
  await until('reads and writes during the outage', () => plain.between(downAt, Infinity).length >= 1500 && writes.filter((w) => w.at > downAt).length >= 200, 30_000);
  const restartAt = performance.now();
  await cluster.shards[0]!.primary.start();
  await until('the primary up again', () => events.some((e) => e.role === 'primary' && e.to === 'up' && e.at > restartAt));
  const upAt = events.find((e) => e.role === 'primary' && e.to === 'up' && e.at > restartAt)!.at;
  await until('writes succeeding again', () => writes.filter((w) => w.at > upAt && w.code === undefined).length >= 50);
  running = false;
  await Promise.all(callers);
  await plain.stop();

  const outageReads = plain.between(killedAt, upAt);
  const outageWrites = writes.filter((w) => w.at >= downAt && w.at < restartAt);
  const figures = {
    plainReads: summary(outageReads),
    writesRefused: outageWrites.filter((w) => w.code !== undefined).length,
    writeRefusalP99Millis: Math.round(percentile(outageWrites.map((w) => w.millis), 99) * 10) / 10,
    divertMillis: Math.round(downAt - killedAt),
    returnMillisAfterStart: Math.round(upAt - restartAt),
    readYourWrites: { reads: rywReads, stale, coded: rywErrors.length },
  };
  console.log(`SIGKILL of the primary, 8 plain readers + 4 read-your-writes callers: ${JSON.stringify(figures)}`);

  expect(summary(plain.records).failed).toBe(0);
  expect(outageReads.length).toBeGreaterThan(1000);
  // Writes during the outage: refused, fast, coded, naming the shard; none sent anywhere else.
  expect(outageWrites.length).toBeGreaterThan(100);
  expect(new Set(outageWrites.map((w) => w.code))).toEqual(new Set([ErrorCodes.PRIMARY_UNAVAILABLE]));
  expect(new Set(outageWrites.map((w) => w.shardId))).toEqual(new Set([shard.id]));
  expect(figures.writeRefusalP99Millis).toBeLessThan(250);
  // Read-your-writes: never stale; a read no replica could confirm failed with a coded, retryable error.
  expect(stale).toBe(0);
  expect(rywReads).toBeGreaterThan(100);
  for (const code of rywErrors) expect([ErrorCodes.READ_YOUR_WRITES_UNAVAILABLE, ErrorCodes.PRIMARY_UNAVAILABLE]).toContain(code);
  // Back without a restart of the dialect: writes succeed and reads still come from replicas.
  expect(writes.filter((w) => w.at > upAt && w.code === undefined).length).toBeGreaterThanOrEqual(50);
  expect(dialect.replicaStatus().every((s) => s.state === 'serving')).toBe(true);
}, 60_000);
