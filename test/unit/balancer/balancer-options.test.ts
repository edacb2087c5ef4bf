import { Balancer, ConfigError } from '../../../src/balancer';
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
});
