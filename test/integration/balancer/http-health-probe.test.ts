import { Agent } from 'undici';
import { Balancer, HealthChecker, httpHealthProbe, ManualClock } from '../../../src/balancer';
import { startServer, type TestServer } from './http-servers';

describe('httpHealthProbe against a real server that requires credentials', () => {
  let guarded: TestServer;
  const seen: Array<string | undefined> = [];
  const agent = new Agent();
  const expected = `Basic ${Buffer.from('svc:pa ss@word').toString('base64')}`;

  beforeAll(async () => {
    guarded = await startServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(req.headers.authorization === expected ? 200 : 401).end();
    });
  });

  afterAll(async () => {
    await guarded.kill();
    await agent.close();
  });

  it('sends the credentials of the instance address as Basic authorization and finds it healthy', async () => {
    const address = guarded.url.replace('http://', `http://svc:${encodeURIComponent('pa ss@word')}@`);
    const clock = new ManualClock(0);
    const balancer = new Balancer({ clock, instances: [{ id: 'guarded', address }, { id: 'bare', address: guarded.url }] });
    const checker = new HealthChecker(balancer, { clock, intervalMillis: 100, fall: 1, probe: httpHealthProbe({ dispatcher: agent }) });
    checker.start();
    await checker.idle();
    checker.stop();
    expect(balancer.isHealthy('guarded')).toBe(true);
    expect(balancer.isHealthy('bare')).toBe(false); // the server does refuse calls without them
    expect(seen.sort()).toEqual([expected, undefined].sort());
  });
});
