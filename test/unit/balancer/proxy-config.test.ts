import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, startProxyFromConfig, type ProxyConfig } from '../../../src/balancer';
import { loadProxyConfig } from '../../../src/balancer/http/proxy-config';
import { parseUpstream } from '../../../src/balancer/http/proxy-config-upstream';

describe('proxy config', () => {
  it('parses upstreams and flags over defaults', async () => {
    expect(parseUpstream('api1=http://10.0.0.1:80#3')).toEqual({ id: 'api1', address: 'http://10.0.0.1:80', weight: 3 });
    expect(parseUpstream('http://10.0.0.2:80')).toEqual({ id: 'http://10.0.0.2:80', address: 'http://10.0.0.2:80' });
    expect(() => parseUpstream('not a url')).toThrow(/upstreams/);
    const config = await loadProxyConfig(['--upstream', 'http://a:1', '--upstream', 'http://b:2', '--strategy', 'least-connections', '--fall', '2']);
    expect(config).toMatchObject({ strategy: 'least-connections', health: { fall: 2 }, upstreams: [{ address: 'http://a:1' }, { address: 'http://b:2' }] });
    await expect(loadProxyConfig(['--upstream', 'http://a:1', '--strategy', 'fastest'])).rejects.toThrow(/strategy/);
    await expect(loadProxyConfig([])).rejects.toThrow(/upstreams/);
  });

  it('keeps upstream passwords out of ids and errors', () => {
    expect(parseUpstream('http://svc:s3cret@10.0.0.3:8080')).toEqual({ id: 'http://svc:***@10.0.0.3:8080', address: 'http://svc:s3cret@10.0.0.3:8080' });
    expect(() => parseUpstream('http://svc:s3cret@10.0.0.3:bad')).toThrow(/upstreams/);
    try {
      parseUpstream('http://svc:s3cret@10.0.0.3:bad');
    } catch (error) {
      expect((error as Error).message).not.toContain('s3cret');
    }
    expect(() => parseUpstream('http://10.0.0.3:80#0')).toThrow(/upstreams.*weight/);
    expect(() => parseUpstream('http://10.0.0.3:80#abc')).toThrow(/upstreams.*weight/);
  });

  it('never echoes what follows a # in an upstream: it may be the rest of a password', () => {
    for (const text of ['http://alice:1234#secretpw@10.0.0.1:80', 'api=http://alice:1234#secretpw@10.0.0.1:80', 'http://alice:1234#secretpw']) {
      const error = (() => {
        try {
          parseUpstream(text);
        } catch (e) {
          return e as Error;
        }
        return undefined;
      })();
      expect(error?.message).toMatch(/upstreams/);
      expect(`${error?.message} ${JSON.stringify(error)}`).not.toContain('secretpw');
    }
    expect(parseUpstream('http://alice:1234%23secretpw@10.0.0.1:8080')).toEqual({
      id: 'http://alice:***@10.0.0.1:8080',
      address: 'http://alice:1234%23secretpw@10.0.0.1:8080',
    });
  });
});

describe('proxy config file errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'proxy-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The error loading `text` as the config file gives (fails the test when there is none). */
  async function errorFor(text: string): Promise<ConfigError> {
    const file = join(dir, 'proxy.json');
    writeFileSync(file, text);
    const error = await loadProxyConfig(['--config', file]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(file);
    return error as ConfigError;
  }

  it('refuses a file holding null, naming the file', async () => {
    expect((await errorFor('null')).message).toMatch(/must be a JSON object.*got null/);
  });

  it('refuses upstreams given as a string, naming the field and the file', async () => {
    const error = await errorFor('{ "upstreams": "http://127.0.0.1:8081" }');
    expect(error.context.option).toBe('upstreams');
    expect(error.message).toMatch(/^Invalid option `upstreams`: must be a list of URLs .*got "http:\/\/127\.0\.0\.1:8081" \(in config file /);
  });

  it('refuses an upstream address that is not a URL at start, naming the upstream', async () => {
    const error = await errorFor('{ "upstreams": [{ "id": "a", "address": "not a url" }] }');
    expect(error.context.option).toBe('upstreams[0].address');
    expect(error.message).toMatch(/`not a url` is not a URL/);
    await expect(startProxyFromConfig({ upstreams: [{ id: 'a', address: 'not a url' }] })).rejects.toThrow(/`upstreams\[0\]\.address`/);
  });

  it('names the file and the line of a JSON syntax error', async () => {
    const error = await errorFor('{\n  "upstreams": [\n  }\n');
    expect(error.message).toMatch(/proxy\.json is not valid JSON at line 3/);
  });

  it('reports a number given as text as text, naming the field and the file', async () => {
    const error = await errorFor('{ "upstreams": ["http://127.0.0.1:8081"], "maxAttempts": "3" }');
    expect(error.message).toMatch(/^Invalid option `maxAttempts`: must be an integer >= 1, got "3" \(in config file .*proxy\.json\)$/);
  });

  it('refuses unknown fields, misspelt health settings and strategy options, naming them', async () => {
    expect((await errorFor('{ "upstreams": ["http://127.0.0.1:8081"], "healthCheck": {} }')).context.option).toBe('healthCheck');
    expect((await errorFor('{ "upstreams": ["http://127.0.0.1:8081"], "health": { "interval": 5 } }')).context.option).toBe('health.interval');
    expect((await errorFor('{ "upstreams": ["http://127.0.0.1:8081"], "strategyOptions": { "decay": 5 } }')).context.option).toBe('decay');
    expect((await errorFor('{ "upstreams": ["http://127.0.0.1:8081"], "strategy": "round-robinn" }')).context.option).toBe('strategy');
    expect((await errorFor('{ "upstreams": ["http://127.0.0.1:8081", "http://127.0.0.1:8081"] }')).context.option).toBe('upstreams[1].id');
  });

  it('takes an admin address on loopback only', async () => {
    expect(await loadProxyConfig(['--upstream', 'http://127.0.0.1:8081', '--admin', '127.0.0.1:9901'])).toMatchObject({ admin: '127.0.0.1:9901' });
    await expect(loadProxyConfig(['--upstream', 'http://127.0.0.1:8081', '--admin', '0.0.0.0:9901'])).rejects.toThrow(/^Invalid option `admin`: must be a loopback address/);
    expect((await errorFor('{ "upstreams": ["http://127.0.0.1:8081"], "admin": "10.0.0.5:9901" }')).context.option).toBe('admin');
  });

  it('names a file it cannot read', async () => {
    const missing = join(dir, 'missing.json');
    await expect(loadProxyConfig(['--config', missing])).rejects.toThrow(new RegExp(`cannot read ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`));
  });

  it('accepts a correct file and applies flags over it', async () => {
    const file = join(dir, 'good.json');
    const config: ProxyConfig = { upstreams: [{ id: 'a', address: 'http://127.0.0.1:8081', weight: 2 }], maxAttempts: 2, health: { path: '/up' } };
    writeFileSync(file, JSON.stringify(config));
    expect(await loadProxyConfig(['--config', file, '--max-attempts', '4'])).toMatchObject({ ...config, maxAttempts: 4 });
  });
});
