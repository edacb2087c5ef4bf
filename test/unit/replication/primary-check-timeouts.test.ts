/**
 * A primary is marked down by one refused connection, but only by two checks in a row without an
 * answer, whether it was up or not checked yet (a dialect starting while its primary is slow to
 * answer one check must not refuse writes). Injected clock; the server is a client whose query
 * never answers (a hung server), so the check's own deadline is what ends it.
 */
import { ManualClock } from '../../../src/kernel/clock';
import { createTopology } from '../../../src/cluster/topology';
import { OutlierEjector } from '../../../src/balancer/outlier-ejection';
import { leastConnections } from '../../../src/balancer/strategies/least-connections';
import type { PoolClientLike } from '../../../src/cluster/server-pools';
import { ReplicaEvents, type ReplicaEvent } from '../../../src/replication/replica-events';
import { resolveReplicaReadOptions } from '../../../src/replication/replica-options';
import { ReplicaSet } from '../../../src/replication/replica-set';

const CHECK_TIMEOUT = 1000;

function hungSet(clock: ManualClock) {
  const shard = createTopology({ shards: [{ id: 's0', primary: 'postgres://u:secret@primary/db', replicas: [] }] }).shards[0]!;
  const hung: PoolClientLike = { query: (() => new Promise(() => undefined)) as PoolClientLike['query'], release: () => undefined };
  const events = new ReplicaEvents();
  const seen: ReplicaEvent[] = [];
  events.subscribe((e) => seen.push(e));
  const set = new ReplicaSet(shard, {
    options: resolveReplicaReadOptions({ readFrom: 'replica', lagCheckIntervalMillis: 0, checkTimeoutMillis: CHECK_TIMEOUT }),
    clock,
    pools: { acquire: () => Promise.resolve(hung), busy: () => 0 },
    events,
    strategy: leastConnections(),
    createEjector: () => new OutlierEjector(),
    onPromoted: () => undefined,
  });
  return { set, seen };
}

async function timedOutCheck(clock: ManualClock, set: ReplicaSet): Promise<void> {
  const check = set.checkPrimaryNow();
  await Promise.resolve(); // the checkout resolves, the query is sent
  await Promise.resolve();
  clock.advance(CHECK_TIMEOUT);
  await check;
}

test('an unchecked primary that misses one check is not down; two in a row mark it down', async () => {
  const clock = new ManualClock();
  const { set, seen } = hungSet(clock);
  expect(set.primary.state).toBe('unchecked');
  await timedOutCheck(clock, set);
  expect(set.primary.state).toBe('unchecked');
  expect(seen).toEqual([]);
  await timedOutCheck(clock, set);
  expect(set.primary.state).toBe('down');
  expect(seen.map((e) => `${e.from}->${e.to}`)).toEqual(['unchecked->down']);
  expect(seen[0]!.reason).not.toContain('secret');
});
