import { powerOfTwoChoices, seededRandom } from '../../../../src/balancer';
import { fake, list, replay } from '../fake-instance';

describe('powerOfTwoChoices', () => {
  it('compares two distinct random candidates and keeps the less loaded', () => {
    const c = list(fake('a', { inflight: 5 }), fake('b', { inflight: 0 }), fake('c', { inflight: 2 }), fake('d', { inflight: 9 }));
    // i = floor(0.0 * 4) = 0 (a); j = (0 + 1 + floor(0.5 * 3)) % 4 = 2 (c) → c.
    expect(powerOfTwoChoices({ random: replay(0.0, 0.5) }).pick(c, {}).id).toBe('c');
    // i = 3 (d); j = (3 + 1 + floor(0.99 * 3)) % 4 = 2 (c) → c; never the same index twice.
    expect(powerOfTwoChoices({ random: replay(0.99, 0.99) }).pick(c, {}).id).toBe('c');
    // i = 1 (b); j = (1 + 1 + 0) % 4 = 2 (c) → b.
    expect(powerOfTwoChoices({ random: replay(0.3, 0.0) }).pick(c, {}).id).toBe('b');
  });

  it('always compares two distinct candidates', () => {
    const s = powerOfTwoChoices({ random: seededRandom(11) });
    const idle = fake('idle');
    const busy = fake('busy', { inflight: 3 });
    for (let i = 0; i < 500; i++) expect(s.pick(list(busy, idle), {}).id).toBe('idle');
  });
});
