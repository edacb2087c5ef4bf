import { seededRandom, weightedRandom } from '../../../../src/balancer';
import { fake, list, replay } from '../fake-instance';
import { ids } from './strategy-helpers';

describe('weightedRandom', () => {
  it('maps the random draw onto cumulative weights', () => {
    const s = weightedRandom({ random: replay(0.0, 0.49, 0.5, 0.99) });
    const c = list(fake('a', { weight: 2 }), fake('b', { weight: 1 }), fake('c', { weight: 1 }));
    expect(ids(s, c, 4)).toEqual(['a', 'a', 'b', 'c']);
  });

  it('is reproducible with a seeded random source, which repeats its sequence for a seed', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const xs = Array.from({ length: 5 }, a);
    expect(Array.from({ length: 5 }, b)).toEqual(xs);
    expect(new Set(xs).size).toBe(5);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });
});
