import { HashRing } from '../../../src/kernel/hash-ring';

/** The ring the L2 ring tier places keys with (kernel/hash-ring.ts). */
describe('hash ring', () => {
  const keys = Array.from({ length: 100_000 }, (_, i) => `user:${i}`);
  const owners = (ring: HashRing) => keys.map((k) => ring.owner(k));
  it('spreads keys evenly over 150 virtual nodes per server', () => {
    const ring = new HashRing(['a', 'b', 'c']);
    const counts = new Map<string, number>();
    for (const o of owners(ring)) counts.set(o, (counts.get(o) ?? 0) + 1);
    for (const c of counts.values()) expect(Math.abs(c / keys.length - 1 / 3)).toBeLessThan(0.07);
  });
  it('adding a fourth server remaps at most 30% of 100,000 keys, all to the new server', () => {
    const before = owners(new HashRing(['a', 'b', 'c']));
    const after = owners(new HashRing(['a', 'b', 'c', 'd']));
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] !== after[i]) {
        moved++;
        expect(after[i]).toBe('d');
      }
    }
    const share = moved / keys.length;
    console.log(`ring: adding a 4th server remapped ${(share * 100).toFixed(2)}% of ${keys.length} keys`);
    expect(share).toBeLessThanOrEqual(0.3);
    expect(share).toBeGreaterThan(0.15);
  });
  it('removing a server remaps only its keys', () => {
    const before = owners(new HashRing(['a', 'b', 'c', 'd']));
    const after = owners(new HashRing(['a', 'b', 'd']));
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] !== after[i]) {
        moved++;
        expect(before[i]).toBe('c');
      } else expect(before[i]).not.toBe('c');
    }
    console.log(`ring: removing 1 of 4 servers remapped ${((moved / keys.length) * 100).toFixed(2)}% of keys (only its own)`);
  });
  it('walks to the next server as the stand-in', () => {
    const ring = new HashRing(['a', 'b', 'c']);
    const w = ring.walk('some-key');
    expect(w).toHaveLength(3);
    expect(ring.members[w[0]!]).toBe(ring.owner('some-key'));
  });
});
