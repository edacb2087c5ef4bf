import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { Balancer, leastConnections, listenProxy, type RunningProxy } from '../../../src/balancer';
import { startServer, type TestServer } from './http-servers';

const CHUNK = 64 * 1024;

/** Deterministic bytes: chunk i is filled with byte (i × 31) mod 256. */
function* chunks(count: number): Generator<Buffer> {
  for (let i = 0; i < count; i++) yield Buffer.alloc(CHUNK, (i * 31) % 256);
}

function sha256Of(count: number): string {
  const hash = createHash('sha256');
  for (const c of chunks(count)) hash.update(c);
  return hash.digest('hex');
}

async function sha256Stream(body: AsyncIterable<Buffer | Uint8Array>): Promise<{ hex: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const c of body) {
    hash.update(c);
    bytes += c.length;
  }
  return { hex: hash.digest('hex'), bytes };
}

describe('reverse proxy against real HTTP servers', () => {
  let upstreams: TestServer[] = [];
  let proxy: RunningProxy;
  let balancer: Balancer;
  const agent = new Agent();

  beforeAll(async () => {
    upstreams = await Promise.all(
      ['a', 'b'].map((name) =>
        startServer((req, res) => {
          const url = new URL(req.url ?? '/', 'http://x');
          const seen = { 'x-server': name, 'x-seen-xff': String(req.headers['x-forwarded-for'] ?? ''), 'x-seen-host': String(req.headers['x-forwarded-host'] ?? '') };
          if (url.pathname === '/echo') {
            // Streams the request body straight back.
            res.writeHead(201, { ...seen, 'content-type': 'application/octet-stream' });
            req.pipe(res);
            return;
          }
          if (url.pathname === '/big') {
            res.writeHead(200, { ...seen, 'content-type': 'application/octet-stream' });
            Readable.from(chunks(Number(url.searchParams.get('chunks')))).pipe(res);
            return;
          }
          const status = /^\/status\/(\d+)$/.exec(url.pathname);
          if (status !== null) {
            const code = Number(status[1]);
            res.writeHead(code, { ...seen, 'x-custom': 'kept', ...(code === 302 ? { location: '/elsewhere' } : {}) });
            res.end(code === 204 || code === 304 ? undefined : `body of ${code}`);
            return;
          }
          res.writeHead(200, seen).end(name);
        }),
      ),
    );
    balancer = new Balancer({
      strategy: leastConnections(),
      instances: upstreams.map((u, k) => ({ id: ['a', 'b'][k] as string, address: u.url })),
    });
    proxy = await listenProxy({ balancer });
  });

  afterAll(async () => {
    await proxy.close();
    await Promise.all(upstreams.map((u) => u.kill()));
    await agent.close();
  });

  it('streams a large request body through and back unchanged', async () => {
    const count = 256; // 16 MiB
    const response = await request(`${proxy.url}/echo`, {
      method: 'POST',
      body: Readable.from(chunks(count)),
      dispatcher: agent,
    });
    expect(response.statusCode).toBe(201);
    const { hex, bytes } = await sha256Stream(response.body);
    expect(bytes).toBe(count * CHUNK);
    expect(hex).toBe(sha256Of(count));
  });

  it('streams a large response body unchanged', async () => {
    const count = 320; // 20 MiB
    const response = await request(`${proxy.url}/big?chunks=${count}`, { dispatcher: agent });
    expect(response.statusCode).toBe(200);
    const { hex, bytes } = await sha256Stream(response.body);
    expect(bytes).toBe(count * CHUNK);
    expect(hex).toBe(sha256Of(count));
  });

  it.each([200, 204, 302, 304, 404, 418, 500, 503])('passes status %i, headers and body through', async (code) => {
    const response = await request(`${proxy.url}/status/${code}`, { dispatcher: agent });
    expect(response.statusCode).toBe(code);
    expect(response.headers['x-custom']).toBe('kept');
    if (code === 302) expect(response.headers.location).toBe('/elsewhere');
    expect(await response.body.text()).toBe(code === 204 || code === 304 ? '' : `body of ${code}`);
  });

  it('appends the client address to X-Forwarded-For', async () => {
    const plain = await request(`${proxy.url}/`, { dispatcher: agent });
    await plain.body.dump();
    expect(plain.headers['x-seen-xff']).toBe('127.0.0.1');
    expect(plain.headers['x-seen-host']).toBe(new URL(proxy.url).host);
    const chained = await request(`${proxy.url}/`, { headers: { 'x-forwarded-for': '203.0.113.9' }, dispatcher: agent });
    await chained.body.dump();
    expect(chained.headers['x-seen-xff']).toBe('203.0.113.9, 127.0.0.1');
  });

  it('serves its statistics as JSON and Prometheus text', async () => {
    const json = await request(`${proxy.url}/__balancer/stats`, { dispatcher: agent });
    const stats = (await json.body.json()) as { strategy: string; totalRequests: number; instances: unknown[] };
    expect(stats.strategy).toBe('least-connections');
    expect(stats.totalRequests).toBeGreaterThan(10);
    expect(stats.instances).toHaveLength(2);
    const metrics = await request(`${proxy.url}/__balancer/metrics`, { dispatcher: agent });
    expect(metrics.headers['content-type']).toContain('text/plain; version=0.0.4');
    const text = await metrics.body.text();
    expect(text).toMatch(/^kysely_scale_balancer_requests_total\{instance="a",outcome="success"\} \d+$/m);
    expect(text).toMatch(/^kysely_scale_balancer_requests_total\{instance="a",outcome="failure"\} [1-9]\d*$/m); // the 500 and 503
  });

  it('retries idempotent requests on another upstream when one dies, and answers 503 when none is left', async () => {
    await upstreams[1]?.kill();
    const statuses = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const r = await request(`${proxy.url}/n/${i}`, { dispatcher: agent });
        return `${r.statusCode}:${await r.body.text()}`;
      }),
    );
    expect(new Set(statuses)).toEqual(new Set(['200:a']));
    const b = balancer.stats().instances.find((i) => i.id === 'b');
    expect(b?.failedRequests).toBeGreaterThan(0);
  });
});

describe('proxy CLI', () => {
  it('starts from flags, proxies, and stops on SIGTERM', async () => {
    const upstream = await startServer((_req, res) => res.end('from upstream'));
    const child = spawn(
      process.execPath,
      [
        join(__dirname, '../../../node_modules/tsx/dist/cli.mjs'),
        join(__dirname, '../../../src/balancer/http/proxy-cli.ts'),
        '--listen', '127.0.0.1:0',
        '--upstream', `api=${upstream.url}`,
        '--strategy', 'least-connections',
        '--health-interval-ms', '200',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /on (http:\/\/[\d.]+:\d+)/.exec(out);
          if (m !== null) resolve(m[1] as string);
        });
        child.once('exit', (code) => reject(new Error(`proxy exited with ${code}`)));
      });
      const response = await request(`${url}/`);
      expect(response.statusCode).toBe(200);
      expect(await response.body.text()).toBe('from upstream');
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      await upstream.kill();
    }
  });

  it('refuses an upstream with a # in its password without printing the rest of the password', async () => {
    const child = spawn(
      process.execPath,
      [
        join(__dirname, '../../../node_modules/tsx/dist/cli.mjs'),
        join(__dirname, '../../../src/balancer/http/proxy-cli.ts'),
        '--listen', '127.0.0.1:0',
        '--upstream', 'http://alice:1234#secretpw@127.0.0.1:9',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(output).toContain('%23');
    expect(output).not.toContain('secretpw');
  });

  it('exits at start with an error naming the config file and the field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'proxy-cli-'));
    const file = join(dir, 'proxy.json');
    writeFileSync(file, JSON.stringify({ upstreams: ['http://127.0.0.1:9'], maxAttempts: '3' }));
    try {
      const child = spawn(
        process.execPath,
        [join(__dirname, '../../../node_modules/tsx/dist/cli.mjs'), join(__dirname, '../../../src/balancer/http/proxy-cli.ts'), '--config', file],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code).toBe(2);
      expect(stderr).toContain(`Invalid option \`maxAttempts\`: must be an integer >= 1, got "3" (in config file ${file})`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
