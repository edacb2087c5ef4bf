import { AutoscalingAdvisor, ManualClock, type BalancerStats } from '../../../src/balancer';

function stats(fields: Partial<BalancerStats> & { cpus?: number[] }): BalancerStats {
  const n = fields.totalInstances ?? 4;
  return {
    strategy: 'x',
    totalInstances: n,
    healthyInstances: n,
    unhealthyInstances: 0,
    ejectedInstances: 0,
    panic: false,
    totalRequests: 0,
    failedRequests: 0,
    noInstanceErrors: 0,
    inflight: 20,
    averageLatencyMillis: 800,
    instances: (fields.cpus ?? []).map((cpu, k) => ({
      id: `i${k}`, address: '', weight: 1, effectiveWeight: 1, inflight: 0, totalRequests: 0, failedRequests: 0, cancelledRequests: 0, errorRate: 0,
      latencyEwmaMillis: undefined, latencyP50Millis: undefined, latencyP99Millis: undefined, latencySumMillis: 0,
      healthy: true, ejected: false, ejectedUntilMillis: undefined, metadata: { cpuUsageRatio: cpu },
    })),
    ...fields,
  };
}

describe('AutoscalingAdvisor', () => {
  it('recommends scaling up on high latency, connections or CPU, with reasons', () => {
    const clock = new ManualClock(0);
    const advisor = new AutoscalingAdvisor({ clock });
    const advice = advisor.advise(stats({ averageLatencyMillis: 2500, inflight: 90 }));
    expect(advice.action).toBe('scale-up');
    expect(advice.targetInstances).toBe(6);
    expect(advice.reasons).toEqual(['mean latency 2500 ms > 2000 ms', '90 calls in flight > 80']);
    expect(advisor.advise(stats({ cpus: [0.9, 0.85] })).reasons).toContain('scale-up cooldown');
    clock.advance(300_000);
    expect(advisor.advise(stats({ cpus: [0.9, 0.85] }))).toMatchObject({ action: 'scale-up', reasons: ['mean CPU 88% > 80%'] });
  });

  it('recommends scaling down only when everything is low and outside the cooldown', () => {
    const clock = new ManualClock(0);
    const advisor = new AutoscalingAdvisor({ clock });
    const quiet = stats({ averageLatencyMillis: 100, inflight: 2, cpus: [0.1, 0.2] });
    expect(advisor.advise(quiet)).toMatchObject({ action: 'scale-down', targetInstances: 3 });
    expect(advisor.advise(quiet).reasons).toContain('scale-down cooldown');
    clock.advance(600_000);
    expect(advisor.advise(quiet).action).toBe('scale-down');
    clock.advance(600_000);
    expect(advisor.advise(stats({ averageLatencyMillis: 100, inflight: 2, cpus: [0.5] })).action).toBe('hold');
    expect(advisor.advise(stats({ totalInstances: 2, averageLatencyMillis: 100, inflight: 2 })).action).toBe('hold');
  });

  it('holds while instances are unhealthy, and respects min and max', () => {
    const advisor = new AutoscalingAdvisor({ clock: new ManualClock(0), maxInstances: 5 });
    expect(advisor.advise(stats({ unhealthyInstances: 1, averageLatencyMillis: 5000 })).action).toBe('hold');
    expect(advisor.advise(stats({ totalInstances: 1 }))).toMatchObject({ action: 'scale-up', targetInstances: 2 });
    expect(advisor.advise(stats({ totalInstances: 5, averageLatencyMillis: 5000 })).reasons).toContain('already at maxInstances 5');
    expect(() => new AutoscalingAdvisor({ minInstances: 5, maxInstances: 2 })).toThrow(/maxInstances/);
  });
});
