import { Balancer, HealthChecker, ManualClock, type BalancedInstance } from '../../../src/balancer';

/** A probe whose answers the test sets per instance; `hang` never answers. */
function scriptedProbe(): { answers: Map<string, boolean | 'hang'>; calls: string[]; probe: (i: BalancedInstance, s: AbortSignal) => Promise<boolean> } {
  const answers = new Map<string, boolean | 'hang'>();
  const calls: string[] = [];
  return {
    answers,
    calls,
    probe: (instance) => {
      calls.push(instance.id);
      const answer = answers.get(instance.id) ?? true;
      return answer === 'hang' ? new Promise<boolean>(() => undefined) : Promise.resolve(answer);
    },
  };
}

function setup(): { clock: ManualClock; balancer: Balancer; checker: HealthChecker; script: ReturnType<typeof scriptedProbe> } {
  const clock = new ManualClock(0);
  const balancer = new Balancer({ clock, instances: [{ id: 'a', address: 'x' }, { id: 'b', address: 'y' }] });
  const script = scriptedProbe();
  const checker = new HealthChecker(balancer, { clock, intervalMillis: 100, timeoutMillis: 50, rise: 2, fall: 3, probe: script.probe });
  return { clock, balancer, checker, script };
}

async function tick(clock: ManualClock, checker: HealthChecker, millis: number): Promise<void> {
  clock.advance(millis);
  await checker.idle();
}

describe('HealthChecker', () => {
  it('marks an instance down after `fall` failures and up after `rise` passes', async () => {
    const { clock, balancer, checker, script } = setup();
    const changes: string[] = [];
    balancer.on('health-changed', (e) => changes.push(`${e.instanceId}:${e.healthy}@${clock.now()}`));
    script.answers.set('a', false);
    checker.start(); // first round at t = 0
    await checker.idle();
    await tick(clock, checker, 100);
    expect(balancer.isHealthy('a')).toBe(true); // 2 failures
    await tick(clock, checker, 100);
    expect(balancer.isHealthy('a')).toBe(false); // 3rd failure at t = 200
    script.answers.set('a', true);
    await tick(clock, checker, 100);
    expect(balancer.isHealthy('a')).toBe(false);
    await tick(clock, checker, 100);
    expect(balancer.isHealthy('a')).toBe(true);
    expect(changes).toEqual(['a:false@200', 'a:true@400']);
    expect(balancer.isHealthy('b')).toBe(true);
    expect(checker.state('a')).toEqual({ healthy: true, consecutiveSuccesses: 2, consecutiveFailures: 0 });
    checker.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('counts a probe slower than the timeout as failed', async () => {
    const { clock, balancer, checker, script } = setup();
    script.answers.set('b', 'hang');
    checker.start();
    for (let round = 0; round < 3; round++) {
      expect(balancer.isHealthy('b')).toBe(true);
      clock.advance(50); // the round's timeout fires
      await checker.idle();
      clock.advance(50); // the next round starts
    }
    expect(balancer.isHealthy('b')).toBe(false);
    expect(checker.state('b')?.consecutiveFailures).toBe(3);
    checker.stop();
  });

  it('probes instances added at run time and forgets removed ones', async () => {
    const { clock, balancer, checker, script } = setup();
    checker.start();
    await checker.idle();
    balancer.addInstance({ id: 'c', address: 'z' });
    balancer.removeInstance('a');
    script.calls.length = 0;
    await tick(clock, checker, 100);
    expect(script.calls.sort()).toEqual(['b', 'c']);
    expect(checker.state('a')).toBeUndefined();
    checker.stop();
  });

  it('stop() aborts running probes, clears their timers and discards their results', async () => {
    const clock = new ManualClock(0);
    const b = new Balancer({ clock, instances: [{ id: 'a', address: 'x' }] });
    const signals: AbortSignal[] = [];
    const checker = new HealthChecker(b, {
      clock,
      intervalMillis: 100,
      timeoutMillis: 50,
      fall: 1,
      probe: (_i, signal) => {
        signals.push(signal);
        return new Promise<boolean>((resolve) => signal.addEventListener('abort', () => resolve(false)));
      },
    });
    checker.start();
    expect(clock.pendingTimers).toBe(2); // next round + the probe's timeout
    checker.stop();
    await checker.idle();
    expect(signals[0]?.aborted).toBe(true);
    expect(clock.pendingTimers).toBe(0);
    expect(b.isHealthy('a')).toBe(true); // the aborted probe did not count as a failure
    clock.advance(1000);
    expect(signals).toHaveLength(1);
  });

  it('refuses invalid options, naming them', () => {
    const b = new Balancer({ instances: [{ id: 'a', address: 'x' }] });
    expect(() => new HealthChecker(b, { intervalMillis: Number.NaN, probe: async () => true })).toThrow(/intervalMillis/);
    expect(() => new HealthChecker(b, { fall: 0, probe: async () => true })).toThrow(/fall/);
    expect(() => new HealthChecker(b, { interval: 1000, probe: async () => true } as never)).toThrow(/`interval`: is not an option; known options: intervalMillis/);
    expect(() => new HealthChecker(b, { probe: 'http' } as never)).toThrow(/`probe`/);
    expect(() => new HealthChecker({} as never, { probe: async () => true })).toThrow(/`target`/);
  });
});
