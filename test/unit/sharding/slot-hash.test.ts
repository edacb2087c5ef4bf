/** Contracts 2 and 3: MurmurHash3 x86 32-bit, seed 0, over the key's UTF-8 bytes, modulo the slot count. */
import { x86 } from 'murmurhash3js-revisited';
import { slotOf, DEFAULT_SLOT_COUNT } from '../../../src/cluster/slot-hash';

describe('slot hash (contracts 2 and 3)', () => {
  it('is MurmurHash3 x86 32-bit, seed 0, over the UTF-8 bytes, modulo 4096', () => {
    const bytes = Array.from(Buffer.from('héllo ✓', 'utf8'));
    expect(slotOf('héllo ✓')).toBe(x86.hash32(bytes, 0) % 4096);
    expect(DEFAULT_SLOT_COUNT).toBe(4096);
  });

  it('matches known MurmurHash3 vectors', () => {
    // Published test vectors of MurmurHash3_x86_32 with seed 0.
    expect(x86.hash32([], 0)).toBe(0);
    expect(slotOf('hello', 2 ** 31) + 0).toBe(0x248bfa47 % 2 ** 31);
    expect(slotOf('Hello, world!', 2 ** 31)).toBe(0xc0363e43 % 2 ** 31);
  });

  it('spreads keys evenly over slots', () => {
    const counts = new Uint32Array(16);
    for (let i = 0; i < 160_000; i++) counts[slotOf(i, 16)]!++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
  });
});
