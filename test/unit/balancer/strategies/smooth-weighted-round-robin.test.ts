import { smoothWeightedRoundRobin } from '../../../../src/balancer';
import { fake, list } from '../fake-instance';
import { ids } from './strategy-helpers';

describe('smoothWeightedRoundRobin', () => {
  it('interleaves 5:1:1 as a a b a c a a', () => {
    const c = list(fake('a', { weight: 5 }), fake('b'), fake('c'));
    expect(ids(smoothWeightedRoundRobin(), c, 7).join(' ')).toBe('a a b a c a a');
  });

  it('follows the effective weight (slow start)', () => {
    const c = list(fake('a', { weight: 1, effectiveWeight: 0.25 }), fake('b'));
    const picks = ids(smoothWeightedRoundRobin(), c, 50);
    expect(picks.filter((id) => id === 'a')).toHaveLength(10);
  });
});
