import { Balancer, createBalancedFetch, createProxyServer, httpHealthProbe, listenProxy } from '../../../src/balancer';

describe('HTTP client, probe and proxy options', () => {
  const balancer = new Balancer({ instances: [{ id: 'a', address: 'http://127.0.0.1:1' }] });

  it('are checked at construction: unknown keys and a missing balancer are refused, naming the option', async () => {
    expect(() => createBalancedFetch({ balancer, timeoutMs: 100 } as never)).toThrow(/`timeoutMs`: is not an option \(did you mean `timeoutMillis`\?\)/);
    expect(() => createBalancedFetch({ balancer: undefined } as never)).toThrow(/`balancer`: must be a Balancer/);
    expect(() => httpHealthProbe({ url: '/health' } as never)).toThrow(/`url`: is not an option/);
    expect(() => createProxyServer({ balancer, headersTimeout: 5 } as never)).toThrow(/`headersTimeout`: is not an option \(did you mean `headersTimeoutMillis`\?\)/);
    await expect(listenProxy({ balancer, port: 0, hostname: '127.0.0.1' } as never)).rejects.toThrow(/`hostname`: is not an option/);
  });
});
