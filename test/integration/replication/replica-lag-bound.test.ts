/**
 * Lag bounds that hold between checks, on real servers: replay is paused on the replica
 * (pg_wal_replay_pause()) while a writer produces WAL, with checks only once a second. Each read
 * also returns the server's replay position (or replay time), and the primary's position before
 * the read is sampled continuously, so a read from a replica beyond the bound is seen. With
 * `maxLagBytes` the bound holds between checks by the primary's observed WAL rate; with
 * `maxLagMillis` by the time the primary was last seen at a replayed position. Prints the figures.
 */
import { setTimeout as pace } from 'node:timers/promises';
import { Kysely, sql } from 'kysely';
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { parseLsn } from '../../../src/cluster/wal-position';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import type { ReplicaReadOptions } from '../../../src/replication/replica-options';
import { waitForReplay, withPg } from '../../support/postgres-replication';
import { ReaderLoad, until, replicatedShard } from './replication-fault-fixture';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
const open: Kysely<DB>[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 1 });
  shard = await replicatedShard(cluster, 'replica_lag', [
    'create table users (id integer primary key, name text not null)',
    "insert into users select i, 'user ' || i from generate_series(1, 100) i",
    'create table blobs (id bigserial primary key, payload text not null)',
    'create table ticks (id integer primary key, n bigint not null)',
    'insert into ticks values (1, 0)',
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.destroy()));
  await cluster?.stop();
});

/** Between two inserts of ~51 KB of WAL: about 5-10 MB/s on loopback. */
const WRITE_PAUSE_MILLIS = 5;

function connect(replicas: ReplicaReadOptions): { db: Kysely<DB>; dialect: ShardedDialect } {
  const topology = createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl, replicas: shard.replicaUrls }] });
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' }, replicas: { readFrom: 'replica', lagCheckIntervalMillis: 1000, checkTimeoutMillis: 1000, ...replicas }, onPoolError: () => undefined });
  const db = new Kysely<DB>({ dialect });
  open.push(db);
  return { db, dialect };
}

/** Runs `step` in a loop on its own connection to the primary until stopped. */
function loop(step: (client: Client) => Promise<void>): { stop(): Promise<void> } {
  let running = true;
  const client = directClient({ connectionString: shard.primaryUrl });
  client.on('error', () => undefined);
  const done = (async () => {
    await client.connect();
    while (running) await step(client);
    await client.end();
  })();
  return {
    stop: () => {
      running = false;
      return done;
    },
  };
}

async function setReplay(paused: boolean): Promise<void> {
  await withPg(shard.replicaUrls[0]!, (c) => c.query(paused ? 'select pg_wal_replay_pause()' : 'select pg_wal_replay_resume()'));
}

test('maxLagBytes holds between checks: no read comes from a replica further behind, while replay is paused under a steady WAL rate', async () => {
  const maxLagBytes = 2 * 1024 * 1024;
  const { db, dialect } = connect({ maxLagBytes });
  await until('the replica serving', () => dialect.replicaStatus()[0]!.eligible);
  // The primary's WAL position, sampled as fast as it answers: a lower bound of where it is at any later time.
  let primaryAt = 0n;
  const sampler = loop(async (c) => {
    primaryAt = parseLsn((await c.query<{ l: string }>('select pg_current_wal_insert_lsn()::text as l')).rows[0]!.l);
  });
  // A steady rate, as the guarantee assumes (README: the bound holds while the primary writes at
  // most 1.5 x its peak rate of the last 10 s): a pause between inserts, never a catch-up burst
  // after the machine stalled the writer (an unpaced loop on a loaded machine bursts past it).
  const writer = loop(async (c) => {
    await c.query("insert into blobs (payload) select repeat(md5(random()::text), 16) from generate_series(1, 100)");
    await pace(WRITE_PAUSE_MILLIS);
  });
  let violations = 0;
  let worst = 0n;
  let onReplica = 0;
  let onPrimary = 0;
  const load = new ReaderLoad(8, async (reader, n) => {
    const floor = primaryAt;
    const row = await db
      .selectFrom('users')
      .select(['name', sql<string | null>`pg_last_wal_replay_lsn()::text`.as('replay')])
      .where('id', '=', ((reader + n) % 100) + 1)
      .executeTakeFirstOrThrow();
    if (row.replay === null) {
      onPrimary++;
      return;
    }
    onReplica++;
    const behind = floor - parseLsn(row.replay);
    if (behind > worst) worst = behind;
    if (behind > BigInt(maxLagBytes)) violations++;
  });
  let pausedAt = 0n;
  try {
    try {
      // The rate the bound relies on is seen by the dialect's primary checks: three checks while the
      // writer runs (each check moves the replica's replayed position), then replay stops.
      const replayed = new Set<string>();
      await until("three checks at the writer's rate", () => {
        const status = dialect.replicaStatus()[0]!;
        if (status.replayedTo !== null && primaryAt > 0n) replayed.add(status.replayedTo);
        return replayed.size > 3 && status.eligible;
      });
      await until('reads on the replica', () => onReplica > 200);
      await setReplay(true);
      pausedAt = primaryAt;
      const replicaReadsBefore = onReplica;
      // Until the paused replica is 4 bounds behind, and then as many reads again.
      await until('the paused replica 4 bounds behind', () => primaryAt - pausedAt > BigInt(4 * maxLagBytes), 30_000);
      const readsAt = load.records.length;
      await until('reads after that', () => load.records.length > readsAt + 300, 30_000);
      const figures = { violations, worstBehindBytes: Number(worst), maxLagBytes, replicaReadsWhilePaused: onReplica - replicaReadsBefore, primaryReads: onPrimary, pausedBehindBytes: Number(primaryAt - pausedAt) };
      console.log(`replay paused under a steady WAL rate, checks every 1 s: ${JSON.stringify(figures)}`);
      expect(violations).toBe(0);
      expect(onPrimary).toBeGreaterThan(0); // the reads past the bound went to the primary
    } finally {
      await setReplay(false);
      await writer.stop();
    }
    await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
    const before = onReplica;
    await until('the replica serving again', () => onReplica > before + 100);
  } finally {
    // Stopped on every path: a failed assertion must not leave readers running (Jest would never exit).
    await load.stop();
    await sampler.stop();
  }
  expect(violations).toBe(0);
  expect(load.records.filter((r) => r.failed !== undefined)).toEqual([]);
}, 60_000);

test('maxLagMillis holds between checks: no read comes from a replica whose data is older, while replay is paused', async () => {
  const maxLagMillis = 1000;
  const { db, dialect } = connect({ maxLagMillis });
  await until('the replica serving', () => dialect.replicaStatus()[0]!.eligible);
  // A commit every few ms; when each returned. A replica that shows tick n lacks tick n + 1, which had
  // committed by the time its update returned: its data is at least that old.
  const returnedAt: number[] = [];
  const ticker = loop(async (c) => {
    const { rows } = await c.query<{ n: string }>('update ticks set n = n + 1 where id = 1 returning n');
    returnedAt[Number(rows[0]!.n)] = Date.now();
  });
  let violations = 0;
  let worst = 0;
  let onReplica = 0;
  let onPrimary = 0;
  const load = new ReaderLoad(8, async (reader, n) => {
    const startedAt = Date.now();
    const row = await db
      .selectFrom('users')
      .select(['name', sql<string | null>`pg_last_wal_replay_lsn()::text`.as('replay'), sql<string>`(select n from ticks where id = 1)`.as('tick')])
      .where('id', '=', ((reader + n) % 100) + 1)
      .executeTakeFirstOrThrow();
    if (row.replay === null) {
      onPrimary++;
      return;
    }
    onReplica++;
    const next = returnedAt[Number(row.tick) + 1];
    if (next === undefined || next > startedAt) return; // the next tick had not committed when the read began
    const age = startedAt - next;
    if (age > worst) worst = age;
    if (age > maxLagMillis) violations++;
  });
  try {
    try {
      await until('reads on the replica', () => onReplica > 200);
      await setReplay(true);
      const pausedAt = Date.now();
      const replicaReadsBefore = onReplica;
      await until('the paused replica 3 bounds old', () => Date.now() - pausedAt > 3 * maxLagMillis, 30_000);
      const figures = { violations, worstAgeMillisLowerBound: Math.round(worst), maxLagMillis, replicaReadsWhilePaused: onReplica - replicaReadsBefore, primaryReads: onPrimary };
      console.log(`replay paused, a commit every few ms, checks every 1 s: ${JSON.stringify(figures)}`);
      expect(violations).toBe(0);
      expect(onPrimary).toBeGreaterThan(0);
    } finally {
      await setReplay(false);
      await ticker.stop();
    }
    await waitForReplay(shard.primaryUrl, shard.replicaUrls[0]!);
    const before = onReplica;
    await until('the replica serving again', () => onReplica > before + 100);
  } finally {
    await load.stop();
  }
  expect(violations).toBe(0);
  expect(load.records.filter((r) => r.failed !== undefined)).toEqual([]);
}, 60_000);
