import { request as httpRequest } from 'node:http';
import { Agent, request } from 'undici';
import { Balancer, listenProxy, roundRobin, type RunningProxy } from '../../../src/balancer';
import { startServer, type TestServer } from './http-servers';

describe('reverse proxy: headers, failures and secrets', () => {
  let upstream: TestServer;
  let proxy: RunningProxy;
  let balancer: Balancer;
  const agent = new Agent();
  /** Requests the upstream saw, by path. */
  const seen = new Map<string, { headers: Record<string, unknown>; method: string }>();
  let onPartialBody: (() => void) | undefined;
  let upstreamRequestClosed: (() => void) | undefined;

  beforeAll(async () => {
    upstream = await startServer((req, res) => {
      const path = req.url ?? '/';
      seen.set(path, { headers: { ...req.headers }, method: req.method ?? '' });
      if (path === '/upload') {
        req.once('data', () => onPartialBody?.());
        req.on('close', () => upstreamRequestClosed?.());
        req.resume();
        return; // never answers: the client gives up mid-body
      }
      if (path === '/cut') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.write(Buffer.alloc(64 * 1024, 1), () => res.socket?.destroy());
        return;
      }
      if (path === '/hop') {
        res.writeHead(200, {
          connection: 'keep-alive, x-listed',
          'keep-alive': 'timeout=99',
          'x-listed': 'drop me',
          'proxy-authenticate': 'Basic',
          'proxy-x': 'drop',
          trailer: 'x-t',
          'x-end-to-end': 'kept',
        });
        res.end('hop');
        return;
      }
      req.resume();
      res.end(`${req.method} ${path}`);
    });
    balancer = new Balancer({
      strategy: roundRobin(),
      instances: [{ id: 'up', address: upstream.url.replace('http://', 'http://svc:s3cretpw@') }],
    });
    proxy = await listenProxy({ balancer, dispatcher: agent, headersTimeoutMillis: 5_000 });
  });

  afterAll(async () => {
    await proxy.close();
    await upstream.kill();
    await agent.close();
  });

  it('strips hop-by-hop headers both ways, keeps end-to-end ones, sets Host to the upstream and appends X-Forwarded-For', async () => {
    // node:http, because undici will not send a Connection header that lists other headers.
    const { port } = new URL(proxy.url);
    const response = await new Promise<{ headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/hop',
          headers: [
            ['host', new URL(proxy.url).host],
            ['connection', 'keep-alive, x-client-listed'],
            ['x-client-listed', 'drop'],
            ['te', 'trailers'],
            ['proxy-authorization', 'Basic Zm9vOmJhcg=='],
            ['proxy-custom', 'drop'],
            ['x-forwarded-for', '198.51.100.1'],
            ['x-forwarded-for', '203.0.113.9'],
            ['x-end-to-end', 'kept'],
          ].flat(),
          agent: false,
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ headers: res.headers, body }));
        },
      );
      req.on('error', reject).end();
    });
    expect(response.body).toBe('hop');
    const up = seen.get('/hop')?.headers ?? {};
    for (const h of ['x-client-listed', 'te', 'proxy-authorization', 'proxy-custom']) expect(up[h]).toBeUndefined();
    expect(up['x-end-to-end']).toBe('kept');
    expect(up.host).toBe(new URL(upstream.url).host);
    expect(up['x-forwarded-host']).toBe(new URL(proxy.url).host);
    expect(up['x-forwarded-for']).toBe('198.51.100.1, 203.0.113.9, 127.0.0.1');
    for (const h of ['x-listed', 'proxy-authenticate', 'proxy-x', 'trailer']) expect(response.headers[h]).toBeUndefined();
    expect(response.headers['keep-alive']).not.toBe('timeout=99'); // the proxy's own connection may have one
    expect(response.headers['x-end-to-end']).toBe('kept');
  });

  it('sends upstream credentials as Basic authorization and never shows the password', async () => {
    const response = await request(`${proxy.url}/auth`, { dispatcher: agent });
    await response.body.dump();
    expect(seen.get('/auth')?.headers.authorization).toBe(`Basic ${Buffer.from('svc:s3cretpw').toString('base64')}`);
    for (const path of ['/__balancer/stats', '/__balancer/metrics']) {
      const text = await (await request(`${proxy.url}${path}`, { dispatcher: agent })).body.text();
      expect(text).toContain('up');
      expect(text).not.toContain('s3cretpw');
    }
  });

  it('answers the stats path only to GET and HEAD; other methods reach the upstream', async () => {
    const post = await request(`${proxy.url}/__balancer/stats`, { method: 'POST', body: 'x', dispatcher: agent });
    expect(await post.body.text()).toBe('POST /__balancer/stats');
    const head = await request(`${proxy.url}/__balancer/stats`, { method: 'HEAD', dispatcher: agent });
    expect(head.statusCode).toBe(200);
    expect(await head.body.text()).toBe('');
  });

  it('releases the call, uncharged, when the client body stream breaks mid-way', async () => {
    const before = balancer.stats().instances[0];
    const partial = new Promise<void>((resolve) => (onPartialBody = resolve));
    const closed = new Promise<void>((resolve) => (upstreamRequestClosed = resolve));
    const { port } = new URL(proxy.url);
    const client = httpRequest({ host: '127.0.0.1', port, method: 'PUT', path: '/upload', headers: { 'content-length': '1000000' } });
    client.on('error', () => undefined);
    client.write(Buffer.alloc(1000, 2));
    await partial;
    expect(balancer.stats().inflight).toBe(1);
    client.destroy();
    await closed; // the proxy aborted the upstream request
    const after = balancer.stats().instances[0];
    expect(after?.inflight).toBe(0);
    expect(after?.cancelledRequests).toBe((before?.cancelledRequests ?? 0) + 1);
    expect(after?.failedRequests).toBe(before?.failedRequests);
  });

  it('releases and charges the upstream whose response body is cut mid-way; the client sees the cut', async () => {
    const before = balancer.stats().instances[0]?.failedRequests ?? 0;
    const response = await request(`${proxy.url}/cut`, { dispatcher: agent });
    expect(response.statusCode).toBe(200);
    await expect(response.body.arrayBuffer()).rejects.toThrow();
    const stats = balancer.stats().instances[0];
    expect(stats?.inflight).toBe(0);
    expect(stats?.failedRequests).toBe(before + 1);
  });
});

describe('reverse proxy: bounded waits and dead upstreams', () => {
  it('answers 504 after headersTimeoutMillis even with a dispatcher of its own, and 502 without the password', async () => {
    const hang = await startServer(() => undefined);
    const dead = await startServer(() => undefined);
    await dead.kill();
    const agent = new Agent(); // no timeouts of its own
    const balancer = new Balancer({ strategy: roundRobin(), outlierEjection: false, instances: [{ id: 'hang', address: hang.url }] });
    const proxy = await listenProxy({ balancer, dispatcher: agent, headersTimeoutMillis: 100 });
    try {
      const slow = await request(`${proxy.url}/`, { dispatcher: agent });
      expect(slow.statusCode).toBe(504);
      await slow.body.dump();
      balancer.removeInstance('hang');
      balancer.addInstance({ id: 'dead', address: dead.url.replace('http://', 'http://u:hunter22@') });
      const bad = await request(`${proxy.url}/`, { dispatcher: agent });
      expect(bad.statusCode).toBe(502);
      expect(await bad.body.text()).not.toContain('hunter22');
      expect(balancer.stats().inflight).toBe(0);
    } finally {
      await proxy.close();
      await hang.kill();
      await agent.close();
    }
  });
});
