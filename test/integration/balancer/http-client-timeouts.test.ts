import { Agent } from 'undici';
import { Balancer, BALANCER_DEFAULTS, createBalancedFetch, ManualClock, RequestTimeoutError, roundRobin } from '../../../src/balancer';
import { startServer, type TestServer } from './http-servers';

describe('balanced fetch deadlines against a real server that never answers', () => {
  let silent: TestServer;
  let answered = 0;
  let onRequest: (() => void) | undefined;
  const agent = new Agent();

  beforeAll(async () => {
    silent = await startServer(() => {
      answered++;
      onRequest?.();
    });
  });

  afterAll(async () => {
    await silent.kill();
    await agent.close();
  });

  it('times out each call after the default deadline, counts it as a failure and ejects the instance', async () => {
    const clock = new ManualClock(0);
    const balancer = new Balancer({ clock, strategy: roundRobin(), instances: [{ id: 'silent', address: silent.url }] });
    const fetch = createBalancedFetch({ balancer, dispatcher: agent, maxAttempts: 1 });
    const ejected: string[] = [];
    balancer.on('ejected', (e) => ejected.push(e.instanceId));
    for (let i = 0; i < 5; i++) {
      const reached = new Promise<void>((resolve) => (onRequest = resolve));
      const pending = fetch('/never').catch((e: unknown) => e);
      await reached;
      clock.advance(BALANCER_DEFAULTS.timeoutMillis);
      expect(await pending).toBeInstanceOf(RequestTimeoutError);
    }
    expect(answered).toBe(5);
    expect(balancer.stats().instances.find((i) => i.id === 'silent')).toMatchObject({ inflight: 0, failedRequests: 5 });
    expect(ejected).toEqual(['silent']);
  });
});
