import { BALANCER_DEFAULTS, RequestTimeoutError } from '../../../src/balancer';
import { keyedBalancer, makeBalancer, stat } from './balancer-fixture';

describe('Balancer.run', () => {
  it('counts the call in flight while it runs and releases it after', async () => {
    const { balancer } = makeBalancer();
    let release!: () => void;
    const pending = balancer.run((instance) => new Promise<string>((resolve) => (release = () => resolve(instance.id))));
    await Promise.resolve();
    expect(balancer.stats().inflight).toBe(1);
    release();
    await expect(pending).resolves.toBe('a');
    const stats = balancer.stats();
    expect(stats.inflight).toBe(0);
    expect(stats.totalRequests).toBe(1);
  });

  it('releases and counts a failure when fn throws', async () => {
    const { balancer } = makeBalancer();
    await expect(balancer.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(balancer.run(() => { throw new Error('sync'); })).rejects.toThrow('sync');
    const stats = balancer.stats();
    expect(stats.inflight).toBe(0);
    expect(stats.failedRequests).toBe(2);
  });

  it('times out on the injected clock, aborts the signal and releases', async () => {
    const { clock, balancer } = makeBalancer({ timeoutMillis: 500 });
    let signal!: AbortSignal;
    const pending = balancer.run((_i, s) => {
      signal = s;
      return new Promise<never>(() => undefined);
    });
    await Promise.resolve();
    await Promise.resolve();
    expect(balancer.stats().inflight).toBe(1);
    clock.advance(499);
    expect(signal.aborted).toBe(false);
    clock.advance(1);
    await expect(pending).rejects.toBeInstanceOf(RequestTimeoutError);
    expect(signal.aborted).toBe(true);
    const stats = balancer.stats();
    expect(stats.inflight).toBe(0);
    expect(stats.failedRequests).toBe(1);
    expect(stats.instances[0]?.latencyP99Millis).toBeCloseTo(500, -1);
  });

  it('gives every call a default deadline of 30 s, charged to the instance as a failure', async () => {
    expect(BALANCER_DEFAULTS.timeoutMillis).toBe(30_000);
    const { clock, balancer } = makeBalancer({ outlierEjection: { consecutiveFailures: 2, maxEjectedPercent: 100 } });
    for (let i = 0; i < 2; i++) {
      const pending = balancer.run(() => new Promise<never>(() => undefined), { exclude: new Set(['b', 'c']) });
      clock.advance(BALANCER_DEFAULTS.timeoutMillis - 1);
      clock.advance(1);
      await expect(pending).rejects.toBeInstanceOf(RequestTimeoutError);
    }
    expect(balancer.stats().instances[0]).toMatchObject({ id: 'a', inflight: 0, failedRequests: 2 });
    expect(balancer.isEjected('a')).toBe(true);
  });

  it('classifies resolved values with isFailure', async () => {
    const { balancer } = makeBalancer();
    await balancer.run(() => 503, { isFailure: (status) => status >= 500 });
    expect(balancer.stats().failedRequests).toBe(1);
  });

  it('spreads concurrent calls by least connections', async () => {
    const { balancer } = makeBalancer();
    const picked: string[] = [];
    const gates: Array<() => void> = [];
    const calls = Array.from({ length: 6 }, () =>
      balancer.run((i) => {
        picked.push(i.id);
        return new Promise<void>((resolve) => gates.push(resolve));
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(picked.sort()).toEqual(['a', 'a', 'b', 'b', 'c', 'c']);
    for (const g of gates) g();
    await Promise.all(calls);
  });

  it('releases exactly once when fn settles after the timeout', async () => {
    const { clock, balancer } = keyedBalancer({ timeoutMillis: 100 });
    let finish!: () => void;
    const pending = balancer.run(() => new Promise<void>((resolve) => (finish = resolve)), { key: 'b' });
    await Promise.resolve();
    await Promise.resolve();
    clock.advance(100);
    await expect(pending).rejects.toThrow(/timeout/);
    finish();
    await Promise.resolve();
    expect(stat(balancer, 'b')).toMatchObject({ inflight: 0, totalRequests: 1, failedRequests: 1 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('clears its timer when fn settles first', async () => {
    const { clock, balancer } = keyedBalancer({ timeoutMillis: 100 });
    await balancer.run(() => 'ok');
    await expect(balancer.run(() => Promise.reject(new Error('x')))).rejects.toThrow('x');
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('Balancer.run under abort', () => {
  it('settles at once when the caller aborts, even if fn ignores its signal, and does not charge the instance', async () => {
    const { balancer, strategy } = keyedBalancer({ outlierEjection: { consecutiveFailures: 2, maxEjectedPercent: 100 } });
    for (let i = 0; i < 3; i++) {
      const controller = new AbortController();
      let fnSignal!: AbortSignal;
      const pending = balancer.run((_i, s) => {
        fnSignal = s;
        return new Promise<never>(() => undefined); // never settles, ignores the signal
      }, { key: 'a', signal: controller.signal });
      await Promise.resolve();
      expect(stat(balancer, 'a')?.inflight).toBe(1);
      controller.abort(new Error('client went away'));
      await expect(pending).rejects.toThrow('client went away');
      expect(fnSignal.aborted).toBe(true);
    }
    expect(stat(balancer, 'a')).toMatchObject({ inflight: 0, cancelledRequests: 3, failedRequests: 0, totalRequests: 0 });
    expect(balancer.isEjected('a')).toBe(false);
    expect(strategy.learned).toEqual([]);
  });

  it('does not pick at all when the signal is already aborted', async () => {
    const { balancer } = keyedBalancer();
    const controller = new AbortController();
    controller.abort(new Error('gone'));
    let called = false;
    await expect(balancer.run(() => (called = true), { signal: controller.signal })).rejects.toThrow('gone');
    expect(called).toBe(false);
    expect(balancer.stats()).toMatchObject({ inflight: 0, totalRequests: 0 });
  });
});
