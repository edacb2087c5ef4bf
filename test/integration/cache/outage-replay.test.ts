import { startTestCluster, type TestCluster } from '../../../src/testing';
import { kill, pause, resume, startChild, type ChildInstance } from './cache-fixtures';

/**
 * After Redis returns from an outage, what a writer could not write or publish is replayed without
 * waiting for that writer to make another call (the repro, each instance its own process):
 * A writes {v:1}; Redis stops answering; A's writes open its breakers; A.set(k, {v:2}) returns;
 * Redis answers again; A stays idle. B (which held {v:1} in L1) and C (a new instance) must see
 * {v:2} within reconnect plus bus delivery: at most 1 s. Measured after SIGSTOP+SIGCONT and after
 * SIGKILL+restart.
 */
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 0, redis: { standalone: 1 } });
}, 60_000);
afterAll(async () => {
  const server = cluster?.redis[0];
  if (server?.running) resume(server);
  await cluster?.stop();
});

interface Outage {
  begin(): Promise<void>;
  /** Resolves once Redis answers again. */
  end(): Promise<void>;
}

async function staleWindowAfter(prefix: string, outage: Outage): Promise<number> {
  const config = { redisUrl: cluster.redis[0]!.url, prefix };
  const [a, b, c] = await Promise.all([startChild(config), startChild(config), startChild(config)]);
  try {
    await a.call('set', 'k', { v: 1 }, '1');
    // A's write reaches B's L1 as an invalidation over the bus: once it has, B's L1 keeps what B reads
    // next (read before, it would be evicted by the late invalidation).
    for (const deadline = performance.now() + 5000; (await b.call<number>('busInvalidations', 'k')) === 0; ) {
      if (performance.now() > deadline) throw new Error("A's invalidation of k never reached B");
    }
    expect(await b.call('get', 'k')).toEqual({ v: 1 });
    expect(await b.call('peek', 'k')).toEqual({ v: 1 }); // B serves it from L1
    await outage.begin();
    // A's writes fail (each within its call deadline) and open its breakers.
    for (let i = 0; i < 3; i++) await a.call('set', `other${i}`, { x: i }, '1');
    await a.call('set', 'k', { v: 2 }, '2'); // returns; Redis took neither the write nor its publish
    // A's L1 holds its own write, unless the outage outlasted busSilenceMillis (L1 then holds nothing).
    expect([{ v: 2 }, null]).toContainEqual(await a.call('peek', 'k'));
    await outage.end();
    const back = performance.now();
    // From here on A is idle: nothing but its own background recovery may replay its write.
    let window = -1;
    const seen: unknown[] = [];
    while (performance.now() - back < 10_000) {
      const [fromB, fromC] = await Promise.all([b.call('get', 'k'), c.call('get', 'k')]);
      seen.push(fromB, fromC);
      if (JSON.stringify([fromB, fromC]) === JSON.stringify([{ v: 2 }, { v: 2 }])) {
        window = performance.now() - back;
        break;
      }
    }
    expect(window).toBeGreaterThanOrEqual(0);
    // Once seen, it stays: every later read on B and C, and on a fresh read of L2, is {v:2}.
    for (let i = 0; i < 20; i++) expect(await Promise.all([b.call('get', 'k'), c.call('get', 'k')])).toEqual([{ v: 2 }, { v: 2 }]);
    const stale = seen.filter((v) => JSON.stringify(v) === JSON.stringify({ v: 1 })).length;
    console.log(`${prefix} stale window after Redis answered again: ${Math.round(window)} ms (${stale} of ${seen.length} reads before it returned {v:1})`);
    return window;
  } finally {
    await Promise.all([a, b, c].map((i: ChildInstance) => i.close()));
  }
}

it('after SIGSTOP then SIGCONT, B and a new instance C see A\'s write within 1 s while A stays idle', async () => {
  const server = cluster.redis[0]!;
  const window = await staleWindowAfter('replay-stop:', { begin: async () => pause(server), end: async () => resume(server) });
  expect(window).toBeLessThanOrEqual(1_000);
}, 60_000);

it('after SIGKILL then a restart, B and a new instance C see A\'s write within 1 s while A stays idle', async () => {
  const server = cluster.redis[0]!;
  const window = await staleWindowAfter('replay-kill:', { begin: () => kill(server), end: () => server.start() });
  expect(window).toBeLessThanOrEqual(1_000);
}, 60_000);
