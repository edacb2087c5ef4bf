import type Redis from 'ioredis';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { ManualClock } from '../../../src/kernel/clock';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { closeRedisClients } from '../../../src/cache/redis-client';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { connect, pause, resume } from './cache-fixtures';

/**
 * While the bus cannot deliver, an instance serves an L1 entry at most `busSilenceMillis` after the
 * bus was last confirmed live; when the bus answers again, L1 is cleared and used again. Real Redis
 * paused with SIGSTOP (the socket stays open: only the heartbeat can tell), time on a ManualClock.
 */
let cluster: TestCluster;
const clients: Redis[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 0, redis: { standalone: 1 } });
});
afterAll(async () => {
  if (cluster?.redis[0]?.running) resume(cluster.redis[0]);
  await closeRedisClients(clients);
  await cluster?.stop();
});

const nextLive = (bus: InvalidationBus): Promise<void> =>
  new Promise((resolve) => {
    const off = bus.onLive(() => (off(), resolve()));
  });

it('serves L1 for busSilenceMillis after the last heartbeat answered, then clears and bypasses it until the bus answers again', async () => {
  const clock = new ManualClock(Date.now());
  const data = await connect(cluster.redis[0]!.url);
  const sub = await connect(cluster.redis[0]!.url, 'subscriber');
  clients.push(data, sub);
  const bus = new InvalidationBus({ publisher: data, subscriber: sub, channel: 'silence:bus', clock, heartbeatIntervalMillis: 1_000 });
  await bus.start();
  const cache = new TieredCache({ policies: { p: { ttlMillis: 600_000 }, local: { levels: ['l1'] } }, l2: singleRedisTier({ client: data, prefix: 'silence:', clock }), bus, clock, busSilenceMillis: 3_000 });
  try {
    expect(await cache.getOrLoad('p', 'k', async () => ({ v: 1 }))).toEqual({ v: 1 });
    const confirmed = nextLive(bus);
    clock.advance(1_000); // heartbeat: answered
    await confirmed;
    pause(cluster.redis[0]!); // from now on nothing confirms the bus
    clock.advance(2_999);
    expect(cache.peek('p', 'k')).toEqual({ v: 1 }); // within the bound
    expect(cache.stats().bus.l1Suspended).toBe(false);
    clock.advance(1); // 3 000 ms since the last answer
    expect(cache.peek('p', 'k')).toBeUndefined();
    expect(cache.stats().bus).toMatchObject({ silences: 1, l1Suspended: true });
    expect(await cache.getOrLoad('local', 'other', async () => 'loaded')).toBe('loaded'); // L1 takes nothing meanwhile…
    expect(cache.peek('local', 'other')).toBeUndefined();
    clock.advance(10_000);
    expect(cache.peek('p', 'k')).toBeUndefined(); // …however long the silence lasts

    resume(cluster.redis[0]!);
    const back = nextLive(bus);
    clock.advance(2_000); // the next heartbeats are answered
    await back;
    expect(cache.stats().bus.l1Suspended).toBe(false);
    expect(await cache.getOrLoad('p', 'fresh', async () => 'f')).toBe('f');
    expect(cache.peek('p', 'fresh')).toBe('f'); // L1 in use again
  } finally {
    await cache.close();
    await bus.close();
  }
});
