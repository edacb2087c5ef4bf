import { AlertMonitor, Balancer, ManualClock, roundRobin } from '../../../src/balancer';

describe('AlertMonitor', () => {
  it('raises and resolves unhealthy, imbalance and latency alerts once per transition', () => {
    const clock = new ManualClock(0);
    // No slow start here: b gets its full share as soon as it is healthy again.
    const balancer = new Balancer({ clock, strategy: roundRobin(), slowStart: false, instances: [{ id: 'a', address: '' }, { id: 'b', address: '' }] });
    const monitor = new AlertMonitor(balancer, { clock, minRequestsForImbalance: 10, highLatencyMillis: 20 });
    const seen: string[] = [];
    monitor.on('alert', (a) => seen.push(`${a.kind}:${a.state}`));
    balancer.setHealth('b', false);
    monitor.check();
    monitor.check();
    expect(seen).toEqual(['unhealthy-instances:raised']);
    balancer.setHealth('b', true);
    // Equal calls: no imbalance.
    for (let i = 0; i < 20; i++) balancer.acquire().release(true);
    monitor.check();
    expect(seen).toEqual(['unhealthy-instances:raised', 'unhealthy-instances:resolved']);
    // Only a gets calls now: imbalance. They take 200 ms, lifting the mean of the 10 s EWMAs over 20 ms.
    for (let i = 0; i < 20; i++) {
      const l = balancer.acquire({ exclude: new Set(['b']) });
      clock.advance(200);
      l.release(true);
    }
    monitor.check();
    expect(seen.slice(2)).toEqual(['load-imbalance:raised', 'high-latency:raised']);
    expect([...monitor.active].sort()).toEqual(['high-latency', 'load-imbalance']);
  });

  it('does not count an instance that is warming up (held below its share on purpose) as an imbalance', () => {
    const clock = new ManualClock(0);
    const balancer = new Balancer({ clock, strategy: roundRobin(), instances: [{ id: 'a', address: '' }, { id: 'b', address: '' }, { id: 'c', address: '' }] });
    const monitor = new AlertMonitor(balancer, { clock, minRequestsForImbalance: 10 });
    const seen: string[] = [];
    monitor.on('alert', (a) => seen.push(`${a.kind}:${a.state}`));
    balancer.setHealth('c', false);
    balancer.setHealth('c', true); // c warms up for 10 s
    for (let i = 0; i < 60; i++) balancer.acquire().release(true);
    monitor.check();
    expect(balancer.stats().instances.find((i) => i.id === 'c')?.totalRequests).toBeLessThan(5);
    expect(seen).toEqual([]); // no load-imbalance alert for c
  });
});
