import { NoInstanceAvailableError, resourceAware } from '../../../../src/balancer';
import { fake, list } from '../fake-instance';

describe('resourceAware', () => {
  const gpu = fake('gpu', { metadata: { capabilities: { gpu_memory: '24GB', cpu_cores: 16 }, cpuUsageRatio: 0.9, memoryUsageRatio: 0.5, gpuUsageRatio: 0.5 } });
  const small = fake('small', { metadata: { capabilities: { gpu_memory: '8GB', cpu_cores: 4 }, cpuUsageRatio: 0.1, memoryUsageRatio: 0.1, gpuUsageRatio: 0.1 } });
  const cpuOnly = fake('cpu', { metadata: { capabilities: { cpu_cores: 32 }, cpuUsageRatio: 0.2, memoryUsageRatio: 0.2 } });

  it('keeps only instances that meet requirements such as gpu_memory >= 16GB', () => {
    const s = resourceAware({ requirements: { gpu_memory: '>=16GB' } });
    expect(s.pick(list(gpu, small, cpuOnly), {}).id).toBe('gpu');
    expect(s.pick(list(gpu, small, cpuOnly), { requirements: ['cpu_cores >= 8'] }).id).toBe('gpu');
  });

  it('throws when no instance meets them', () => {
    const s = resourceAware({ requirements: ['gpu_memory >= 80GB'] });
    expect(() => s.pick(list(gpu, small), {})).toThrow(NoInstanceAvailableError);
  });

  it('prefers free resources, divided by calls in flight', () => {
    const s = resourceAware();
    // small: (0.9 + 0.9 + 0.9)/3 = 0.9; cpu: (0.8 + 0.8 + 0.5)/3 = 0.7; gpu: (0.1 + 0.5 + 0.5)/3
    expect(s.pick(list(gpu, small, cpuOnly), {}).id).toBe('small');
    const busy = { ...small, inflight: 1 }; // 0.9 / 2 = 0.45 < 0.7
    expect(s.pick(list(gpu, busy, cpuOnly), {}).id).toBe('cpu');
  });

  it('refuses an invalid unreportedScore, naming it', () => {
    expect(() => resourceAware({ unreportedScore: 2 })).toThrow(/unreportedScore/);
  });
});
