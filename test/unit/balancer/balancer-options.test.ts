import { Balancer, ConfigError, ManualClock, roundRobin, type BalancerOptions } from '../../../src/balancer';
import { makeBalancer } from './balancer-fixture';

describe('Balancer options and instance specs', () => {
  it('validates specs and options, naming the option', () => {
    expect(() => makeBalancer({ instances: [{ id: 'x', address: 'a' }, { id: 'x', address: 'b' }] })).toThrow(/duplicate/);
    expect(() => makeBalancer({ instances: [{ id: 'x', address: 'a', weight: 0 }] })).toThrow(ConfigError);
    expect(() => makeBalancer({ panicThresholdPercent: 150 })).toThrow(/panicThresholdPercent/);
  });

  it.each([
    [{ timeoutMillis: Number.NaN }, /timeoutMillis/],
    [{ timeoutMillis: -1 }, /timeoutMillis/],
    [{ latencyDecayTimeMillis: 0 }, /latencyDecayTimeMillis/],
    [{ panicThresholdPercent: Number.NaN }, /panicThresholdPercent/],
    [{ instances: [{ id: 'x', address: 'a', weight: Number.NaN }] }, /instances\[x\]\.weight/],
    [{ instances: [{ id: 'x', address: 'a', weight: -2 }] }, /instances\[x\]\.weight/],
    [{ instances: [{ id: 'x', address: 'a', weight: 0 }] }, /instances\[x\]\.weight/],
    [{ instances: [{ id: 'x', address: 'a', metadata: { costPerHour: -1 } }] }, /metadata\.costPerHour/],
    [{ instances: [{ id: 'x', address: 'a', metadata: { cpuUsageRatio: Number.NaN } }] }, /metadata\.cpuUsageRatio/],
    [{ instances: [{ id: 'x', address: 'a', metadata: { capacity: 0 } }] }, /metadata\.capacity/],
    [{ slowStart: { windowMillis: Number.NaN } }, /slowStart\.windowMillis/],
    [{ slowStart: { aggression: 0 } }, /slowStart\.aggression/],
    [{ outlierEjection: { baseEjectionTimeMillis: -5 } }, /outlierEjection\.baseEjectionTimeMillis/],
    [{ outlierEjection: { maxEjectedPercent: Number.NaN } }, /outlierEjection\.maxEjectedPercent/],
  ] as Array<[ConstructorParameters<typeof Balancer>[0], RegExp]>)('refuses %j, naming the option', (options, pattern) => {
    expect(() => new Balancer(options)).toThrow(pattern);
  });

  it('refuses reported usage out of range, naming the field, and keeps the previous value', () => {
    const b = new Balancer({ instances: [{ id: 'a', address: 'x' }] });
    expect(() => b.reportUsage('a', { gpuUsageRatio: 1.5 })).toThrow(/gpuUsageRatio/);
    expect(b.instance('a')?.metadata.gpuUsageRatio).toBeUndefined();
  });

  /** The ConfigError `make()` throws (fails the test when it throws nothing or something else). */
  const configError = (make: () => unknown): ConfigError => {
    try {
      make();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return error as ConfigError;
    }
    throw new Error('constructed without an error');
  };
  const build = (options: unknown) => () => new Balancer(options as BalancerOptions);

  it('refuses a strategy that is a name, an empty object or an uncalled factory, at construction and naming `strategy`', () => {
    expect(configError(build({ strategy: 'round-robinn' })).message).toMatch(/^Invalid option `strategy`: .*not a name; got "round-robinn"/);
    expect(configError(build({ strategy: 'round-robin' })).context.option).toBe('strategy');
    expect(configError(build({ strategy: {} })).message).toMatch(/^Invalid option `strategy`: must be a Strategy/);
    expect(configError(build({ strategy: roundRobin })).message).toMatch(/^Invalid option `strategy`: .*call the factory \(roundRobin\(\)\)/);
    expect(configError(build({ strategy: null })).context.option).toBe('strategy');
  });

  it('refuses unknown option keys, suggesting the one meant', () => {
    expect(configError(build({ timeoutMs: 5000 })).message).toMatch(/^Invalid option `timeoutMs`: is not an option \(did you mean `timeoutMillis`\?\)/);
    expect(configError(build({ healthcheck: { intervalMillis: 1000 } })).message).toMatch(/^Invalid option `healthcheck`: is not an option/);
    expect(configError(build({ slowStart: { window: 1000 } })).context.option).toBe('slowStart.window');
    expect(configError(build({ outlierEjection: { consecutiveFailure: 3 } })).message).toMatch(/did you mean `consecutiveFailures`/);
    expect(configError(build({ instances: [{ id: 'a', url: 'http://x' }] })).context.option).toBe('instances[a].url');
    expect(configError(build({ instances: [{ id: 'a', address: 'x', metadata: { cpuUsage: 0.5 } }] })).context.option).toBe('instances[a].metadata.cpuUsage');
  });

  it('refuses instances that are not a list, options that are not an object, and a clock that is not one', () => {
    expect(configError(build({ instances: null })).context.option).toBe('instances');
    expect(configError(build({ instances: 'http://10.0.0.1' })).context.option).toBe('instances');
    expect(configError(build({ instances: [null] })).context.option).toBe('instances[]');
    expect(configError(build(null)).context.option).toBe('options');
    expect(configError(build({ clock: Date })).context.option).toBe('clock');
    expect(configError(build({ outlierEjection: true })).context.option).toBe('outlierEjection');
    expect(new Balancer({ clock: new ManualClock(0), outlierEjection: false, slowStart: false }).instances()).toEqual([]);
  });
});
