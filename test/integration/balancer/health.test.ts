import { Agent } from 'undici';
import { Balancer, createBalancedFetch, HealthChecker, httpHealthProbe, ManualClock, roundRobin } from '../../../src/balancer';
import { startServer, type TestServer } from './http-servers';

describe('active health checks against real HTTP servers', () => {
  let servers: TestServer[] = [];
  let sick = false;
  const agent = new Agent();

  beforeAll(async () => {
    servers = await Promise.all(
      ['a', 'b', 'c'].map((name) =>
        startServer((req, res) => {
          if (req.url === '/health') {
            res.writeHead(name === 'b' && sick ? 503 : 200).end(name === 'b' && sick ? 'sick' : 'ok');
            return;
          }
          res.writeHead(200, { 'x-server': name }).end(name);
        }),
      ),
    );
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.kill()));
    await agent.close();
  });

  it('ejects an instance whose /health fails within fall × interval and returns it after rise × interval', async () => {
    const clock = new ManualClock(0);
    const intervalMillis = 1000;
    const balancer = new Balancer({
      clock,
      strategy: roundRobin(),
      slowStart: false,
      instances: servers.map((s, k) => ({ id: ['a', 'b', 'c'][k] as string, address: s.url })),
    });
    const checker = new HealthChecker(balancer, {
      clock,
      intervalMillis,
      timeoutMillis: 500,
      fall: 3,
      rise: 2,
      probe: httpHealthProbe({ dispatcher: agent }),
    });
    const changes: Array<{ id: string; healthy: boolean; atMillis: number }> = [];
    balancer.on('health-changed', (e) => changes.push({ id: e.instanceId, healthy: e.healthy, atMillis: clock.now() }));
    const round = async (): Promise<void> => {
      clock.advance(intervalMillis);
      await checker.idle();
    };

    checker.start();
    await checker.idle();
    sick = true;
    const sickAt = clock.now();
    await round();
    await round();
    expect(balancer.isHealthy('b')).toBe(true);
    await round();
    expect(balancer.isHealthy('b')).toBe(false);
    expect((changes[0]?.atMillis ?? Infinity) - sickAt).toBeLessThanOrEqual(3 * intervalMillis);

    const fetch = createBalancedFetch({ balancer, dispatcher: agent });
    const servedBy = new Set<string>();
    for (let i = 0; i < 6; i++) servedBy.add(await (await fetch('/')).text());
    expect([...servedBy].sort()).toEqual(['a', 'c']);

    sick = false;
    const wellAt = clock.now();
    await round();
    expect(balancer.isHealthy('b')).toBe(false);
    await round();
    expect(balancer.isHealthy('b')).toBe(true);
    expect((changes[1]?.atMillis ?? Infinity) - wellAt).toBe(2 * intervalMillis);
    expect(changes.map((c) => `${c.id}:${c.healthy}`)).toEqual(['b:false', 'b:true']);
    checker.stop();
  });

  it('marks an instance that stopped listening unhealthy', async () => {
    const dead = await startServer((_req, res) => res.end('ok'));
    await dead.kill();
    const clock = new ManualClock(0);
    const balancer = new Balancer({ clock, instances: [{ id: 'dead', address: dead.url }, { id: 'a', address: servers[0]?.url as string }] });
    const checker = new HealthChecker(balancer, { clock, intervalMillis: 100, fall: 2, probe: httpHealthProbe({ dispatcher: agent }) });
    checker.start();
    await checker.idle();
    clock.advance(100);
    await checker.idle();
    expect(balancer.isHealthy('dead')).toBe(false);
    expect(balancer.isHealthy('a')).toBe(true);
    checker.stop();
  });
});
