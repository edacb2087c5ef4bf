import { Agent } from 'undici';
import { inspect } from 'node:util';
import { Balancer, ConfigError, createBalancedFetch, NoInstanceAvailableError, roundRobin } from '../../../src/balancer';
import { isConnectionError } from '../../../src/balancer/http/http-retry';
import { startServer, type TestServer } from './http-servers';

describe('balanced fetch: retry rule, aborts and secrets', () => {
  const agent = new Agent();
  let dead: string[] = [];
  let alive: TestServer;
  let hits: string[] = [];
  let parked: Array<() => void> = [];
  let onParked: (() => void) | undefined;

  beforeAll(async () => {
    alive = await startServer((req, res) => {
      hits.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
      if (req.url === '/park') {
        parked.push(() => res.end('late'));
        onParked?.();
        return;
      }
      res.end('ok');
    });
    const servers = await Promise.all([0, 1, 2].map(() => startServer(() => undefined)));
    dead = servers.map((s) => s.url);
    await Promise.all(servers.map((s) => s.kill()));
  });

  beforeEach(() => {
    hits = [];
  });

  afterAll(async () => {
    for (const p of parked) p();
    await alive.kill();
    await agent.close();
  });

  it('never tries an instance twice and stops at maxAttempts', async () => {
    const balancer = new Balancer({ strategy: roundRobin(), outlierEjection: false, instances: dead.map((address, k) => ({ id: `d${k}`, address })) });
    const tried: string[] = [];
    const original = balancer.run.bind(balancer);
    balancer.run = ((fn, options) => original((i, s) => (tried.push(i.id), fn(i, s)), options)) as Balancer['run'];
    const fetch = createBalancedFetch({ balancer, dispatcher: agent, maxAttempts: 2 });
    const error = await fetch('/x').catch((e: unknown) => e);
    expect(isConnectionError(error)).toBe(true);
    expect(tried).toHaveLength(2);
    expect(new Set(tried).size).toBe(2);
  });

  it('reports the connection failure, not NoInstanceAvailableError, when the only instances left are unhealthy', async () => {
    const balancer = new Balancer({
      strategy: roundRobin(),
      outlierEjection: false,
      instances: [{ id: 'dead', address: dead[0] as string }, { id: 'sick', address: alive.url }],
    });
    balancer.setHealth('sick', false);
    const fetch = createBalancedFetch({ balancer, dispatcher: agent, maxAttempts: 3 });
    const error = await fetch('/x').catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(NoInstanceAvailableError);
    expect(isConnectionError(error)).toBe(true);
    expect(hits).toEqual([]); // the unhealthy instance was not used for the retry
  });

  it('does not charge the instance for a caller abort', async () => {
    const balancer = new Balancer({ strategy: roundRobin(), outlierEjection: { consecutiveFailures: 1, maxEjectedPercent: 100 }, instances: [{ id: 'a', address: alive.url }] });
    const fetch = createBalancedFetch({ balancer, dispatcher: agent });
    const controller = new AbortController();
    const reached = new Promise<void>((resolve) => (onParked = resolve));
    const pending = fetch('/park', { signal: controller.signal });
    await reached; // the request is at the server, waiting
    controller.abort(new Error('user gave up'));
    await expect(pending).rejects.toThrow('user gave up');
    const a = balancer.stats().instances[0];
    expect(a).toMatchObject({ inflight: 0, failedRequests: 0, cancelledRequests: 1 });
    expect(balancer.isEjected('a')).toBe(false);
  });

  it('sends credentials of the address as Basic authorization and keeps the password out of errors', async () => {
    const withCreds = alive.url.replace('http://', 'http://app:t0psecret@');
    const balancer = new Balancer({ strategy: roundRobin(), instances: [{ id: 'a', address: withCreds }] });
    const fetch = createBalancedFetch({ balancer, dispatcher: agent });
    expect(await (await fetch('/who')).text()).toBe('ok');
    expect(hits).toEqual([`GET /who Basic ${Buffer.from('app:t0psecret').toString('base64')}`]);
    const explicit = await fetch('/who', { headers: { authorization: 'Bearer mine' } });
    await explicit.text();
    expect(hits[1]).toBe('GET /who Bearer mine');

    const deadWithCreds = new Balancer({ strategy: roundRobin(), instances: [{ id: 'd', address: (dead[1] as string).replace('http://', 'http://app:t0psecret@') }] });
    const error = (await createBalancedFetch({ balancer: deadWithCreds, dispatcher: agent })('/x').catch((e: unknown) => e)) as Error;
    expect(isConnectionError(error)).toBe(true);
    const shown = `${error.message} ${String((error as { cause?: Error }).cause?.message)} ${JSON.stringify(deadWithCreds.stats())}`;
    expect(shown).not.toContain('t0psecret');
  });

  it('keeps the password out of every field of the error for an address that is not a URL (a port typo)', async () => {
    const balancer = new Balancer({ strategy: roundRobin(), instances: [{ id: 'typo', address: 'http://app:t0psecret@127.0.0.1:80a' }] });
    const error = await createBalancedFetch({ balancer, dispatcher: agent })('/x').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('instances[typo].address');
    expect(`${JSON.stringify(error)} ${inspect(error)} ${JSON.stringify(balancer.stats())}`).not.toContain('t0psecret');
  });
});
