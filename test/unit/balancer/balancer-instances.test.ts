import { Balancer, ManualClock, NoInstanceAvailableError, peakEwma, roundRobin } from '../../../src/balancer';
import { keyedBalancer, makeBalancer, record, stat } from './balancer-fixture';

describe('Balancer instances', () => {
  it('adds and removes instances at run time', () => {
    const { balancer } = makeBalancer({ strategy: roundRobin() });
    const added = record(balancer, 'instance-added');
    balancer.addInstance({ id: 'd', address: 'sim://d' });
    expect(added).toEqual([{ instanceId: 'd' }]);
    expect(balancer.removeInstance('a')).toBe(true);
    expect(balancer.removeInstance('a')).toBe(false);
    const seen = new Set(Array.from({ length: 60 }, () => { const l = balancer.acquire(); l.release(true); return l.instance.id; }));
    expect([...seen].sort()).toEqual(['b', 'c', 'd']);
  });

  it('does not mutate the caller options', () => {
    const instances = Object.freeze([Object.freeze({ id: 'a', address: 'x', metadata: Object.freeze({ cpuUsageRatio: 0.1 }) })]);
    const options = Object.freeze({ instances, outlierEjection: Object.freeze({ consecutiveFailures: 2 }) });
    const b = new Balancer(options);
    b.reportUsage('a', { cpuUsageRatio: 0.9 });
    expect(instances[0]?.metadata.cpuUsageRatio).toBe(0.1);
    expect(b.instance('a')?.metadata.cpuUsageRatio).toBe(0.9);
  });

  it('throws NoInstanceAvailableError when there is nothing to pick', () => {
    const b = new Balancer();
    expect(() => b.acquire()).toThrow(NoInstanceAvailableError);
    const { balancer } = makeBalancer();
    expect(() => balancer.acquire({ exclude: new Set(['a', 'b', 'c']) })).toThrow(NoInstanceAvailableError);
    expect(balancer.stats().noInstanceErrors).toBe(1);
  });
});

describe('Balancer removed instances', () => {
  it('a call finishing on a removed instance frees its slot but teaches the strategy and the ejector nothing', () => {
    const { balancer, strategy } = keyedBalancer({ outlierEjection: { consecutiveFailures: 1, maxEjectedPercent: 100 } });
    const lease = balancer.acquire({ key: 'a' });
    balancer.removeInstance('a');
    balancer.addInstance({ id: 'a', address: 'sim://a2' });
    lease.release(false);
    expect(strategy.learned).toEqual([]);
    expect(balancer.isEjected('a')).toBe(false); // the new `a` is not ejected for the old one's failure
    expect(stat(balancer, 'a')).toMatchObject({ inflight: 0, failedRequests: 0 });
  });

  it('a peak-EWMA estimate is not re-created for a removed instance', () => {
    const clock = new ManualClock(0);
    const s = peakEwma({ clock });
    const balancer = new Balancer({ clock, strategy: s, slowStart: false, instances: [{ id: 'a', address: 'x' }, { id: 'b', address: 'y' }] });
    const lease = balancer.acquire();
    const id = lease.instance.id;
    balancer.removeInstance(id);
    clock.advance(5000);
    lease.release(true); // 5 s: would set the estimate to 5000 ms if learned
    balancer.addInstance({ id, address: 'z' });
    expect(s.estimateMillis(id)).toBe(30);
  });
});
