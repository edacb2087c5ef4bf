import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startProxyFromConfig, type ProxyConfig, type ProxyFromConfig } from '../../../src/balancer';
import { startServer, type TestServer } from './http-servers';

describe('proxy upstreams changed at run time', () => {
  let a: TestServer;
  let b: TestServer;
  const agent = new Agent();

  beforeAll(async () => {
    a = await startServer((_req, res) => res.end('a'));
    b = await startServer((_req, res) => res.end('b'));
  });

  afterAll(async () => {
    await Promise.all([a.kill(), b.kill()]);
    await agent.close();
  });

  const get = async (url: string): Promise<string> => (await request(url, { dispatcher: agent })).body.text();
  const admin = async (running: ProxyFromConfig, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) => {
    const response = await request(`${running.admin?.url}${path}`, {
      method,
      dispatcher: agent,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.body.text();
    return { status: response.statusCode, text, json: text === '' ? undefined : (JSON.parse(text) as unknown) };
  };

  it('adds and removes upstreams through the admin endpoint on a loopback address', async () => {
    const running = await startProxyFromConfig({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', health: false, upstreams: [{ id: 'a', address: a.url }] });
    try {
      expect(new URL(running.admin?.url ?? '').hostname).toBe('127.0.0.1');
      expect((await admin(running, 'GET', '/upstreams')).json).toMatchObject([{ id: 'a', address: a.url, healthy: true }]);
      expect(await admin(running, 'POST', '/upstreams', { id: 'b', address: b.url.replace('http://', 'http://svc:s3cretpw@') })).toMatchObject({ status: 201 });
      expect(await admin(running, 'POST', '/upstreams', { id: 'b', address: b.url })).toMatchObject({ status: 409 });
      expect(await admin(running, 'DELETE', '/upstreams/a')).toMatchObject({ status: 204 });
      expect(await admin(running, 'DELETE', '/upstreams/a')).toMatchObject({ status: 404 });
      const served = new Set(await Promise.all(Array.from({ length: 10 }, () => get(`${running.proxy.url}/`))));
      expect([...served]).toEqual(['b']);
      const listed = await admin(running, 'GET', '/upstreams');
      expect(listed.json).toMatchObject([{ id: 'b' }]);
      expect(listed.text).not.toContain('s3cretpw');
      const bad = await admin(running, 'POST', '/upstreams', { id: 'c', address: 'http://svc:s3cretpw@127.0.0.1:80a' });
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('upstream.address');
      expect(bad.text).not.toContain('s3cretpw');
      expect(running.balancer.instances().map((i) => i.id)).toEqual(['b']);
    } finally {
      await running.close();
    }
  });

  it('refuses an admin endpoint on an address other than loopback', async () => {
    await expect(startProxyFromConfig({ listen: '127.0.0.1:0', admin: '0.0.0.0:0', health: false, upstreams: [a.url] })).rejects.toThrow(
      /^Invalid option `admin`: must be a loopback address/,
    );
  });

  it('reloads the config on POST /reload: new upstreams are added, missing ones removed, and a bad config changes nothing', async () => {
    let next: ProxyConfig = { upstreams: [{ id: 'a', address: a.url }] };
    const running = await startProxyFromConfig(
      { listen: '127.0.0.1:0', admin: '127.0.0.1:0', health: false, upstreams: [{ id: 'a', address: a.url }] },
      { load: async () => next },
    );
    try {
      next = { upstreams: [{ id: 'b', address: b.url }] };
      const reloaded = await admin(running, 'POST', '/reload');
      expect(reloaded).toMatchObject({ status: 200, json: { added: ['b'], removed: ['a'] } });
      expect(await get(`${running.proxy.url}/`)).toBe('b');
      next = { upstreams: 'http://127.0.0.1:1' as never };
      expect((await admin(running, 'POST', '/reload')).status).toBe(400);
      expect(running.balancer.instances().map((i) => i.id)).toEqual(['b']);
    } finally {
      await running.close();
    }
  });

  it('re-reads its config file on SIGHUP (CLI)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'proxy-reload-'));
    const file = join(dir, 'proxy.json');
    writeFileSync(file, JSON.stringify({ upstreams: [{ id: 'a', address: a.url }], health: false }));
    // One process (tsx as a loader, not its CLI, which would stand between us and the signal).
    const root = join(__dirname, '../../..');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(root, 'src/balancer/http/proxy-cli.ts'), '--config', file, '--listen', '127.0.0.1:0'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    const waitFor = (pattern: RegExp): Promise<RegExpExecArray> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const m = pattern.exec(out);
          if (m !== null) {
            child.stdout.off('data', onData);
            resolve(m);
          }
        };
        const onData = (d: Buffer): void => {
          out += d.toString();
          check();
        };
        child.stdout.on('data', onData);
        child.once('exit', (code) => reject(new Error(`proxy exited with ${code}: ${out}`)));
        check();
      });
    try {
      const url = (await waitFor(/on (http:\/\/[\d.]+:\d+)/))[1] as string;
      expect(await get(`${url}/`)).toBe('a');
      writeFileSync(file, JSON.stringify({ upstreams: [{ id: 'b', address: b.url }], health: false }));
      child.kill('SIGHUP');
      await waitFor(/reloaded: \+1 -1 upstreams \(1 now\)/);
      expect(await get(`${url}/`)).toBe('b');
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
