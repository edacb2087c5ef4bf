import { leastConnections } from '../../../../src/balancer';
import { fake, list } from '../fake-instance';
import { ids } from './strategy-helpers';

describe('leastConnections', () => {
  it('picks the fewest in flight with a full scan', () => {
    const c = list(fake('a', { inflight: 3 }), fake('b', { inflight: 1 }), fake('c', { inflight: 2 }));
    expect(ids(leastConnections(), c, 3)).toEqual(['b', 'b', 'b']);
  });

  it('breaks ties round-robin', () => {
    const c = list(fake('a', { inflight: 1 }), fake('b', { inflight: 1 }), fake('c', { inflight: 5 }));
    expect(ids(leastConnections(), c, 4)).toEqual(['a', 'b', 'a', 'b']);
  });

  it('weighs in-flight calls: (inflight + 1) / weight', () => {
    // a: (3+1)/4 = 1, b: (0+1)/1 = 1 → tie; a: (4+1)/4 = 1.25 > b → b.
    const a = fake('a', { weight: 4, inflight: 4 });
    const b = fake('b', { inflight: 0 });
    expect(leastConnections().pick(list(a, b), {}).id).toBe('b');
    a.inflight = 2;
    expect(leastConnections().pick(list(a, b), {}).id).toBe('a');
  });
});
