/**
 * Following a primary change, on real servers: the primary is killed and a standby promoted
 * (pg_promote()). Writes follow the promoted standby without a new topology; the old primary, started
 * again on its older timeline, is never written to, even when a stale topology that still names it is
 * published; the other standby, once it streams the old primary's timeline again, is refused; a
 * topology naming the new primary is then followed as published. Prints the figures.
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { ErrorCodes } from '../../../src/kernel/errors';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { withPg } from '../../support/postgres-replication';
import { countedPool, kill9, ServerCounts, until, replicatedShard } from './replication-fault-fixture';

interface DB {
  events: { id: number; note: string };
}

let cluster: TestCluster;
let shard: TestShardUrls;
let db: Kysely<DB>;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 2 });
  shard = await replicatedShard(cluster, 'primary_change', [
    'create table events (id integer primary key, note text not null)',
  ]);
}, 60_000);

afterAll(async () => {
  await db?.destroy();
  await cluster?.stop();
});

test('a promoted standby takes the writes; the old primary on its older timeline is never written to', async () => {
  const [oldPrimary, promoted, other] = [shard.primaryUrl, shard.replicaUrls[0]!, shard.replicaUrls[1]!];
  const writes = new ServerCounts((text) => text.startsWith('insert'));
  const topology = createTopology({ shards: [{ id: shard.id, primary: oldPrimary, replicas: [promoted, other] }], unshardedShardId: shard.id });
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { events: 'id' },
    replicas: { readFrom: 'replica', lagCheckIntervalMillis: 250, checkTimeoutMillis: 1000 },
    createPool: (server) => countedPool(server.url, writes),
    onPoolError: () => undefined,
  });
  const events: (ReplicaEvent & { at: number })[] = [];
  dialect.onReplicaEvent((event) => events.push({ ...event, at: performance.now() }));
  db = new Kysely<DB>({ dialect });
  await until('replicas serving', () => dialect.replicaStatus().every((s) => s.eligible));

  // One writer, ids in order; each outcome kept.
  const outcomes: { id: number; at: number; code: string | undefined }[] = [];
  let running = true;
  const writer = (async () => {
    for (let id = 1; running; id++) {
      const at = performance.now();
      try {
        await db.insertInto('events').values({ id, note: `write ${id}` }).execute();
        outcomes.push({ id, at, code: undefined });
      } catch (error) {
        outcomes.push({ id, at, code: String((error as { code?: unknown }).code) });
        await new Promise((resolve) => setTimeout(resolve, 5)); // a refused write is retried as a new one a moment later
      }
    }
  })();
  const acked = () => outcomes.filter((o) => o.code === undefined);

  await until('writes on the first primary', () => acked().length >= 50);
  const killedAt = performance.now();
  await kill9(cluster.shards[0]!.primary);
  await withPg(promoted, (c) => c.query('select pg_promote()'));
  const promotedAt = performance.now();
  await until('the standby found promoted', () => events.some((e) => e.to === 'promoted'));
  const detectedAt = events.find((e) => e.to === 'promoted')!.at;
  await until('writes on the promoted standby', () => acked().filter((o) => o.at > detectedAt).length >= 50);
  expect(dialect.topology.shards[0]!.primary.url).toBe(promoted);
  expect(dialect.topology.shards[0]!.replicas.map((r) => r.url)).toEqual([other]);
  // The topology with the promotion applied keeps the rest of the publication (the unsharded tables' holder).
  expect(dialect.topology.unshardedShardId).toBe(shard.id);
  writes.reset();

  // The old primary comes back as a primary on timeline 1: nothing is written to it.
  await cluster.shards[0]!.primary.start();
  // The other standby streams the old primary's timeline again: refused.
  const otherRefusedMillis = await until('the other standby refused', () => dialect.replicaStatus().some((s) => s.state === 'refused'));
  // A stale publication that still names the old primary: writes stay on the promoted standby.
  dialect.setTopology(createTopology({ shards: [{ id: shard.id, primary: oldPrimary, replicas: [promoted, other] }], version: 2 }));
  expect(dialect.topology.shards[0]!.primary.url).toBe(promoted);
  const beforeStale = acked().length;
  await until('writes after the stale publication', () => acked().length >= beforeStale + 50);
  expect(writes.on(oldPrimary)).toBe(0);
  expect(writes.on(promoted)).toBeGreaterThanOrEqual(50);
  // The operator publishes the new primary: followed as published.
  dialect.setTopology(createTopology({ shards: [{ id: shard.id, primary: promoted, replicas: [other] }], version: 3 }));
  const beforeFinal = acked().length;
  await until('writes after the publication', () => acked().length >= beforeFinal + 20);
  running = false;
  await writer;

  // Every acknowledged write after the promotion is on the promoted server; none reached the old one.
  const onPromoted = await withPg(promoted, async (c) => (await c.query<{ id: number }>('select id from events')).rows.map((r) => r.id));
  const onOld = await withPg(oldPrimary, async (c) => (await c.query<{ n: string }>('select count(*) as n from events where id > $1', [acked().filter((o) => o.at < killedAt).at(-1)!.id])).rows[0]!.n);
  const ackedAfter = acked().filter((o) => o.at > promotedAt).map((o) => o.id);
  const refused = outcomes.filter((o) => o.code !== undefined);
  // Writes in flight (or on pooled connections) when the primary died fail with the driver's own
  // connection error: they may have committed. Once it is known down, writes are refused unsent.
  const downAt = events.find((e) => e.role === 'primary' && e.to === 'down')!.at;
  const refusedOnceDown = refused.filter((o) => o.at > downAt);
  const firstOnPromoted = acked().find((o) => o.at > killedAt)!;
  const figures = {
    refusedWrites: refused.length,
    refusedBeforeMarkedDown: refused.length - refusedOnceDown.length,
    refusedCodes: [...new Set(refusedOnceDown.map((o) => o.code))],
    markedDownMillis: Math.round(downAt - killedAt),
    promotionDetectedMillisAfterKill: Math.round(detectedAt - killedAt),
    firstWriteOnPromotedMillisAfterKill: Math.round(firstOnPromoted.at - killedAt),
    promoteCallMillis: Math.round(promotedAt - killedAt),
    writesOnOldPrimaryAfterRestart: writes.on(oldPrimary),
    otherStandbyRefusedMillisAfterOldPrimaryStarted: Math.round(otherRefusedMillis),
  };
  console.log(`primary killed, standby promoted: ${JSON.stringify(figures)}`);
  expect(ackedAfter.every((id) => onPromoted.includes(id))).toBe(true);
  expect(Number(onOld)).toBe(0);
  expect(figures.refusedCodes).toEqual([ErrorCodes.PRIMARY_UNAVAILABLE]);
  expect(figures.refusedBeforeMarkedDown).toBeLessThanOrEqual(20);
  expect(events.some((e) => e.role === 'primary' && e.to === 'up' && e.server.includes(new URL(promoted).port))).toBe(true);
}, 60_000);
