import { meetsRequirements, parseQuantity, parseRequirements } from '../../../src/balancer/resource-requirements';

describe('resource requirements', () => {
  it('parses quantities with units', () => {
    expect(parseQuantity('16GB')).toBe(16 * 1024 ** 3);
    expect(parseQuantity('16Gi')).toBe(16 * 1024 ** 3);
    expect(parseQuantity('512Mi')).toBe(512 * 1024 ** 2);
    expect(parseQuantity('200m')).toBeCloseTo(0.2);
    expect(parseQuantity(8)).toBe(8);
    expect(parseQuantity('a100')).toBeUndefined();
  });

  it('matches both forms of requirements', () => {
    const caps = { gpu_memory: '24GB', cpu_cores: 8, gpu_model: 'a100' };
    expect(meetsRequirements(caps, parseRequirements({ gpu_memory: '>=16GB', cpu_cores: '>=8' }))).toBe(true);
    expect(meetsRequirements(caps, parseRequirements(['gpu_memory >= 32GB']))).toBe(false);
    expect(meetsRequirements(caps, parseRequirements({ gpu_model: 'a100' }))).toBe(true);
    expect(meetsRequirements(caps, parseRequirements(['gpu_model != a100']))).toBe(false);
    expect(meetsRequirements(caps, parseRequirements(['tpu_cores > 0']))).toBe(false);
    expect(() => parseRequirements(['gpu memory is big'])).toThrow(/requirements/);
  });
});
