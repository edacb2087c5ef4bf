/**
 * The cutover's wait for replicas ends within `replicaWaitMillis` even when a replica is frozen
 * (SIGSTOP: it accepts TCP connections and never answers, and enforces no statement_timeout). A
 * replica that does not answer counts as not caught up: the cutover fails naming it and is backed
 * out, nothing is published, and `resume` publishes once it answers again. Two shards, each a
 * primary with a real streaming replica; small moves, no load.
 */
import { directClient } from '../../support/direct-pool';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { MOVER_APPLICATION_NAME } from '../../../src/admin/mover/shard-session';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import type { Topology } from '../../../src/cluster/topology';
import { ErrorCodes } from '../../../src/kernel/errors';
import { freeze, until } from '../replication/replication-fault-fixture';

let f: MoverFixture;
let v1: Topology;

beforeAll(async () => {
  f = await startMoverFixture('mover_replica_wait', 2, 1);
  v1 = await f.init(2);
  await f.seed(v1, 0, 200);
}, 60_000);

afterAll(() => f?.close());

/** The new owner's replica: the one the tests freeze. */
const target = () => ({ server: f.cluster.shards[1]!.replicas[0]!, url: f.shards[1]!.replicaUrls[0]!, name: v1.shardById('shard1')!.replicas[0]!.redactedUrl });

/** `promise`, or a failure once `millis` passed (the old code waited for a frozen replica forever). */
function within<T>(millis: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${millis} ms`)), millis);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function latestVersion(): Promise<number> {
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  try {
    return (await catalog.latest())!.version;
  } finally {
    await catalog.close();
  }
}

/** What every failed cutover of these tests shows: the coded error naming the replica, nothing published; then resume publishes. */
async function expectNamedThenResumed(result: MoveResult, publishedBefore: number, answer: RegExp): Promise<void> {
  expect(result.error).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { shardId: 'shard1', replica: target().name } });
  expect(result.error!.message).toMatch(answer);
  expect(result.error!.message).toContain(`Replica ${target().name} of "shard1"`);
  expect(result.status).toBe('open');
  expect(await latestVersion()).toBe(publishedBefore);
  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed).toMatchObject({ status: 'done', versions: [publishedBefore + 1] });
  expect(await verifyShards({ catalog: f.catalogUrl, tables: TABLES })).toMatchObject({ ok: true, misplaced: [] });
}

test('a replica frozen before the wait: the cutover fails within replicaWaitMillis naming it, nothing is published, resume publishes once it answers', async () => {
  const before = await latestVersion();
  let thaw: (() => void) | undefined;
  let frozenAt = 0;
  let result: MoveResult;
  try {
    result = await within(
      20_000,
      'a move whose new owner has a frozen replica',
      moveSlots({
        catalog: f.catalogUrl,
        tables: TABLES,
        slots: '0-255',
        to: 'shard1',
        tuning: { replicaWaitMillis: 1000 },
        hook: (_batch, point) => {
          if (point !== 'switched') return;
          thaw = freeze(target().server);
          frozenAt = performance.now();
        },
      }),
    );
  } finally {
    thaw?.();
  }
  const failedAfterMillis = Math.round(performance.now() - frozenAt);
  console.log(JSON.stringify({ frozenBeforeWait: { failedAfterMillis, error: result.error?.message } }));
  // The wait (1000 ms) plus backing out of the cutover on the primaries.
  expect(failedAfterMillis).toBeLessThan(4000);
  await expectNamedThenResumed(result, before, /^Replica .* of "shard1" did not answer within 1000 ms \(replicaWaitMillis; frozen or overloaded\?\), so it counts as not caught up: make it answer or take it out of the topology, then resume\.$/);
}, 60_000);

test('a replica that freezes while the mover polls it (replay paused, its session connected): the poll fails at the deadline instead of waiting forever', async () => {
  const before = await latestVersion();
  const watcher = directClient({ connectionString: target().url, connectionTimeoutMillis: 5000 });
  watcher.on('error', () => undefined);
  await watcher.connect();
  let thaw: (() => void) | undefined;
  let watching: Promise<unknown> = Promise.resolve();
  let frozenAt = 0;
  let result: MoveResult;
  try {
    result = await within(
      20_000,
      'a move polling a replica that froze',
      moveSlots({
        catalog: f.catalogUrl,
        tables: TABLES,
        slots: '256-511',
        to: 'shard1',
        tuning: { replicaWaitMillis: 3000 },
        hook: async (_batch, point) => {
          if (point !== 'switched') return;
          await watcher.query('select pg_wal_replay_pause()');
          // Frozen once the mover's session on it is connected and polling (it cannot finish: replay is paused).
          watching = until('the mover polling the replica', async () => {
            const { rows } = await watcher.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where application_name = $1', [MOVER_APPLICATION_NAME]);
            return rows[0]!.n > 0;
          }).then(() => {
            thaw = freeze(target().server);
            frozenAt = performance.now();
          });
        },
      }),
    );
    await watching;
  } finally {
    thaw?.();
  }
  await watcher.query('select pg_wal_replay_resume()');
  await watcher.end();
  const failedAfterFreezeMillis = Math.round(performance.now() - frozenAt);
  console.log(JSON.stringify({ frozenWhilePolled: { failedAfterFreezeMillis, error: result.error?.message } }));
  expect(frozenAt).toBeGreaterThan(0);
  expect(failedAfterFreezeMillis).toBeLessThan(6000);
  await expectNamedThenResumed(result, before, /^Replica .* of "shard1" did not answer within 3000 ms \(replicaWaitMillis; frozen or overloaded\?\), so it counts as not caught up: make it answer or take it out of the topology, then resume\.$/);
}, 60_000);
