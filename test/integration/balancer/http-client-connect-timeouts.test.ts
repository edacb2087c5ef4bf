import { Agent } from 'undici';
import { Balancer, createBalancedFetch, ManualClock, RequestTimeoutError, roundRobin } from '../../../src/balancer';
import { startBlackhole, startServer, type Blackhole, type TestServer } from './http-servers';

describe('balanced fetch: timeouts while connecting', () => {
  let blackhole: Blackhole;
  let alive: TestServer;
  let silent: TestServer;
  let hits: string[] = [];
  let onSilent: (() => void) | undefined;
  const agent = new Agent();

  beforeAll(async () => {
    blackhole = await startBlackhole();
    alive = await startServer((req, res) => {
      hits.push(`${req.method} ${req.url}`);
      res.end('alive');
    });
    silent = await startServer(() => onSilent?.());
  });

  beforeEach(() => {
    hits = [];
  });

  afterAll(async () => {
    await Promise.all([blackhole.stop(), alive.kill(), silent.kill()]);
    await agent.close();
  });

  /** Round-robin over [first, alive] on a manual clock, 1 s deadline, so `first` is tried first. */
  function setup(first: string): { clock: ManualClock; balancer: Balancer; fetch: ReturnType<typeof createBalancedFetch> } {
    const clock = new ManualClock(0);
    const balancer = new Balancer({
      clock,
      strategy: roundRobin(),
      timeoutMillis: 1_000,
      instances: [{ id: 'first', address: first }, { id: 'alive', address: alive.url }],
    });
    return { clock, balancer, fetch: createBalancedFetch({ balancer, dispatcher: agent }) };
  }

  it('retries on another instance a call that timed out before its request was sent, and charges the first', async () => {
    const { clock, balancer, fetch } = setup(blackhole.url);
    const pending = fetch('/item/7');
    await new Promise((resolve) => setImmediate(resolve)); // the connect to the blackhole is under way
    expect(hits).toEqual([]);
    clock.advance(1_000);
    const response = await pending;
    expect(await response.text()).toBe('alive');
    expect(hits).toEqual(['GET /item/7']);
    expect(balancer.stats().instances.find((i) => i.id === 'first')).toMatchObject({ failedRequests: 1, inflight: 0 });
  });

  it('does not retry a call that timed out after its request was sent', async () => {
    const { clock, fetch } = setup(silent.url);
    const reached = new Promise<void>((resolve) => (onSilent = resolve));
    const pending = fetch('/item/8').catch((e: unknown) => e);
    await reached;
    clock.advance(1_000);
    expect(await pending).toBeInstanceOf(RequestTimeoutError);
    expect(hits).toEqual([]);
  });
});
