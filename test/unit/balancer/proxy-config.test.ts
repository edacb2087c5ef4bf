import { loadProxyConfig, parseUpstream } from '../../../src/balancer/http/proxy-config';

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
