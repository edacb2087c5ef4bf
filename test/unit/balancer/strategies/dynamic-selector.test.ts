import { dynamicSelector, ManualClock } from '../../../../src/balancer';
import { fake, list } from '../fake-instance';

describe('dynamicSelector', () => {
  it('switches strategy from current metrics and reports the switch', () => {
    const clock = new ManualClock(0);
    const switches: string[] = [];
    const s = dynamicSelector({ clock, evaluationIntervalMillis: 1000, onSwitch: (from, to) => switches.push(`${from}->${to}`) });
    const a = fake('a', { metadata: { cpuUsageRatio: 0.5 } });
    const b = fake('b', { metadata: { cpuUsageRatio: 0.5 } });
    s.pick(list(a, b), {});
    expect(s.name).toBe('dynamic:peak-ewma');
    a.metadata = { cpuUsageRatio: 0.95 };
    b.metadata = { cpuUsageRatio: 0.9 };
    s.pick(list(a, b), {});
    expect(s.name).toBe('dynamic:peak-ewma'); // not re-evaluated within the interval
    clock.advance(1000);
    s.pick(list(a, b), {});
    expect(s.name).toBe('dynamic:resource-aware');
    a.metadata = { cpuUsageRatio: 0.1 };
    b.metadata = { cpuUsageRatio: 0.1 };
    a.latencyEwmaMillis = 400;
    clock.advance(1000);
    s.pick(list(a, b), {});
    expect(s.name).toBe('dynamic:load-adjusted-latency');
    expect(switches).toEqual(['peak-ewma->resource-aware', 'resource-aware->load-adjusted-latency']);
  });

  it('refuses an invalid evaluation interval, naming it', () => {
    expect(() => dynamicSelector({ evaluationIntervalMillis: -1 })).toThrow(/evaluationIntervalMillis/);
  });
});
