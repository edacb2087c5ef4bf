import { ConfigError } from '../../../src/kernel/errors';
import { CACHE_POLICY_DEFAULTS, EXAMPLE_POLICIES, resolvePolicies, resolvePolicy } from '../../../src/cache/cache-policy';

describe('cache policies', () => {
  it('validates and names the option', () => {
    expect(() => resolvePolicy('user_data', { ttlMillis: -1 })).toThrow(/`policies\.user_data\.ttlMillis`/);
    expect(() => resolvePolicy('p', { levels: [] })).toThrow(/`policies\.p\.levels`/);
    expect(() => resolvePolicy('p', { levels: ['l3' as 'l1'] })).toThrow(/unknown level "l3"/);
    expect(() => resolvePolicy('p', { ttl: 5 } as never)).toThrow(/`policies\.p\.ttl`: is not an option; known options: ttlMillis, graceMillis/);
    expect(() => resolvePolicy('p', { ttlMilis: 5 } as never)).toThrow(/`policies\.p\.ttlMilis`: is not an option \(did you mean `ttlMillis`\?\)/);
    expect(() => resolvePolicy('p', { maxEntries: 0 })).toThrow('Invalid option `policies.p.maxEntries`: must be an integer >= 1, got 0');
    expect(() => resolvePolicy('p', { writeThrough: 'yes' as never })).toThrow('Invalid option `policies.p.writeThrough`: must be true or false, got "yes"');
    expect(() => resolvePolicy('p', { softTimeoutMillis: 10, hardTimeoutMillis: 5 })).toThrow(ConfigError);
    expect(() => resolvePolicies({})).toThrow(/`policies`/);
  });
  it('has frozen defaults and keeps no reference to the options', () => {
    expect(Object.isFrozen(CACHE_POLICY_DEFAULTS)).toBe(true);
    const opts = { ttlMillis: 1000, levels: ['l1' as const] };
    const p = resolvePolicy('x', opts);
    opts.levels.push('l2' as never);
    expect(p.levels).toEqual(['l1']);
    expect(Object.isFrozen(p)).toBe(true);
  });
  it('resolves the example policies of the original design', () => {
    const all = resolvePolicies(EXAMPLE_POLICIES);
    expect(all.get('analysis_results')).toMatchObject({ ttlMillis: 7_200_000, useL1: false, useL2: true, writeThrough: false });
    expect(all.get('user_data')).toMatchObject({ ttlMillis: 3_600_000, maxEntries: 10_000, cacheAside: false });
  });
});
