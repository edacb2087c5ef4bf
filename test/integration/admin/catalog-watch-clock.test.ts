/**
 * A catalog watch's heartbeats and reconnect waits run on the catalog's `clock` and `random`
 * options (1b11861 hard-coded the system clock and Math.random, and had no such options): a
 * ManualClock drives them here, so a minute's heartbeat and half a minute's backoff take no real
 * time. The catalog is real and really frozen (SIGSTOP); the deadlines on its connections and
 * statements stay on real time (a ManualClock never holds a call).
 */
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { CatalogTimeoutError } from '../../../src/admin/catalog-connections';
import { ManualClock, type Cancel } from '../../../src/kernel/clock';
import { ErrorCodes } from '../../../src/kernel/errors';
import { freeze, until } from '../replication/replication-fault-fixture';
import { withPassword } from './admin-cli-process';

/** A ManualClock that records the delay of every callback scheduled on it. */
class RecordingClock extends ManualClock {
  readonly delays: number[] = [];

  override setTimeout(callback: () => void, delayMillis: number): Cancel {
    this.delays.push(delayMillis);
    return super.setTimeout(callback, delayMillis);
  }
}

let cluster: TestCluster;
let catalogUrl: string;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = (await cluster.createDatabase('catalog_clock')) as [TestShardUrls];
  catalogUrl = withPassword(shard.primaryUrl);
  const catalog = new TopologyCatalog({ url: catalogUrl });
  await catalog.install();
  await catalog.publish(createTopology({ shards: [{ id: 'shard0', primary: shard.primaryUrl }] }), 'init');
  await catalog.close();
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

test('heartbeat and reconnect backoff follow the injected clock and random source', async () => {
  const clock = new RecordingClock();
  const catalog = new TopologyCatalog({
    url: catalogUrl,
    clock,
    random: () => 0.5, // each wait shortened by a quarter: 0.5 + 0.5 / 2
    heartbeatIntervalMillis: 60_000,
    reconnectDelayMillis: 30_000,
    maxReconnectDelayMillis: 120_000,
    statementTimeoutMillis: 500,
    connectionTimeoutMillis: 500,
  });
  const seen: number[] = [];
  const errors: Error[] = [];
  const watch = await catalog.watch(
    (t) => seen.push(t.version),
    (e) => errors.push(e),
  );
  const publisher = new TopologyCatalog({ url: catalogUrl });
  const started = performance.now();
  try {
    expect(seen).toEqual([1]);
    // The first heartbeat is scheduled on the injected clock (the system clock's timers would not show here).
    expect(clock.delays).toEqual([60_000]);
    clock.advance(60_000); // a heartbeat on a healthy catalog, then the next one scheduled
    await until('the next heartbeat scheduled', () => clock.delays.length === 2, 5000);
    expect(clock.delays).toEqual([60_000, 60_000]);

    const thaw = freeze(cluster.shards[0]!.primary);
    try {
      clock.advance(60_000); // the heartbeat on a frozen catalog: no answer within 500 + 500 ms (real time)
      await until('the frozen catalog reported', () => errors.length === 1, 5000);
      await until('the reconnect scheduled', () => clock.delays.length === 3, 5000);
      expect(clock.delays[2]).toBe(22_500); // 30 s × 0.75
      clock.advance(22_500); // an attempt, still frozen: fails at the connect deadline
      await until('the failed attempt reported', () => errors.length === 2, 5000);
      await until('the next attempt scheduled', () => clock.delays.length === 4, 5000);
      expect(clock.delays[3]).toBe(45_000); // doubled: 60 s × 0.75
    } finally {
      thaw();
    }
    await publisher.publish((await publisher.latest())!.withSlotsMoved([0], 'shard0'));
    // Nothing else is waiting: the watch reconnects when the clock says so, not before.
    expect(clock.pendingTimers).toBe(1);
    expect(seen).toEqual([1]);
    clock.advance(45_000);
    await until('version 2 delivered after the reconnect', () => seen.includes(2), 10_000);
    expect(clock.delays.at(-1)).toBe(60_000); // heartbeats again
  } finally {
    await watch.close();
    await publisher.close();
    await catalog.close();
  }
  const realMillis = performance.now() - started;
  console.log(JSON.stringify({ manualClockMillis: 60_000 + 60_000 + 22_500 + 45_000, realMillis: Math.round(realMillis), reports: errors.map((e) => e.message) }));
  expect(seen).toEqual([1, 2]);
  for (const error of errors) {
    expect(error).toBeInstanceOf(CatalogTimeoutError);
    expect(error).toMatchObject({ code: ErrorCodes.CATALOG_UNAVAILABLE });
  }
  expect(errors[0]!.message).toContain('did not answer a statement within 1000 ms');
  expect(errors[1]!.message).toContain('did not answer while connecting within 500 ms');
  // Three and a bit minutes of heartbeats and backoff; real time only for the two real deadlines (1 s + 0.5 s) and the round trips.
  expect(realMillis).toBeLessThan(8000);
}, 60_000);
