import { Agent } from 'undici';
import { Balancer, createBalancedFetch, leastConnections, roundRobin } from '../../../src/balancer';
import { startServer, type TestServer } from './http-servers';

describe('balanced fetch against real HTTP servers', () => {
  let servers: TestServer[] = [];
  const agent = new Agent({ connections: 16 });

  beforeEach(async () => {
    servers = await Promise.all(
      ['a', 'b', 'c'].map((name) =>
        startServer((req, res) => {
          // A little work so several calls are in flight when a server dies.
          setTimeout(() => res.writeHead(200, { 'x-server': name }).end(`${name}:${req.url}`), 2 + Math.random() * 5);
        }),
      ),
    );
  });

  afterEach(async () => {
    await Promise.all(servers.map((s) => s.kill()));
  });

  afterAll(async () => {
    await agent.close();
  });

  it('loses no idempotent request when an instance is killed mid-load', async () => {
    const balancer = new Balancer({
      strategy: leastConnections(),
      instances: servers.map((s, k) => ({ id: ['a', 'b', 'c'][k] as string, address: s.url })),
    });
    const fetch = createBalancedFetch({ balancer, dispatcher: agent });
    const total = 900;
    const failures: unknown[] = [];
    const servedBy = new Map<string, number>();
    let issued = 0;
    let done = 0;
    const worker = async (): Promise<void> => {
      while (issued < total) {
        const n = issued++;
        if (n === 300) void servers[1]?.kill();
        try {
          const response = await fetch(`/item/${n}`);
          const body = await response.text();
          if (response.status !== 200 || !body.endsWith(`/item/${n}`)) failures.push(`${response.status} ${body}`);
          const by = response.headers.get('x-server') ?? '?';
          servedBy.set(by, (servedBy.get(by) ?? 0) + 1);
        } catch (error) {
          failures.push(error);
        }
        done++;
      }
    };
    await Promise.all(Array.from({ length: 12 }, worker));
    expect(failures).toEqual([]);
    expect(done).toBe(total);
    expect(servedBy.get('b') ?? 0).toBeGreaterThan(50);
    expect(servedBy.get('b') ?? 0).toBeLessThan(400);
    // Connection failures were charged to b and ejected it.
    expect(balancer.stats().instances.find((i) => i.id === 'b')?.failedRequests).toBeGreaterThan(0);
    expect(balancer.isEjected('b')).toBe(true);
  });

  it('does not retry a non-idempotent request', async () => {
    await servers[0]?.kill();
    const balancer = new Balancer({
      strategy: roundRobin(),
      instances: [
        { id: 'dead', address: servers[0]?.url as string },
        { id: 'alive', address: servers[2]?.url as string },
      ],
    });
    const fetch = createBalancedFetch({ balancer, dispatcher: agent });
    await expect(fetch('/order', { method: 'POST', body: 'x' })).rejects.toThrow();
    const retried = await fetch('/order', { method: 'PUT', body: 'x' }); // round-robin: alive
    expect(retried.status).toBe(200);
    const get = await fetch('/again'); // dead first, retried on alive
    expect(await get.text()).toBe('c:/again');
    expect(balancer.stats().instances.find((i) => i.id === 'dead')?.failedRequests).toBe(2);
  });
});
