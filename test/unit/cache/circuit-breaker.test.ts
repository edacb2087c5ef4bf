import { ManualClock } from '../../../src/kernel/clock';
import { CircuitBreaker } from '../../../src/cache/circuit-breaker';

describe('circuit breaker', () => {
  it('opens after the threshold, probes once after openMillis, closes on success', () => {
    const clock = new ManualClock();
    const states: string[] = [];
    const b = new CircuitBreaker(clock, { failureThreshold: 2, openMillis: 1000 }, (s) => states.push(s));
    b.failure();
    expect(b.allow()).toBe(true);
    b.failure();
    expect(b.allow()).toBe(false);
    clock.advance(999);
    expect(b.allow()).toBe(false);
    clock.advance(1);
    expect(b.allow()).toBe(true); // the probe
    expect(b.allow()).toBe(false); // only one
    b.failure();
    expect(b.state).toBe('open');
    clock.advance(1000);
    expect(b.allow()).toBe(true);
    b.success();
    expect(b.state).toBe('closed');
    expect(states).toEqual(['open', 'halfOpen', 'open', 'halfOpen', 'closed']);
    expect(() => new CircuitBreaker(clock, { failureThreshold: 0 })).toThrow(/`breaker\.failureThreshold`/);
  });
});
