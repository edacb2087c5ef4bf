import { x86 } from 'murmurhash3js-revisited';
import { murmur3 } from '../../../src/kernel/murmur3';

// A small seeded PRNG so the inputs are the same on every run.
function prng(seed: number): () => number {
  return () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
}

describe('murmur3', () => {
  it('equals murmurhash3js-revisited x86.hash32 over UTF-8 bytes for 20,000 mixed keys', () => {
    const rand = prng(7);
    const alphabet = ['a', 'Z', '0', '-', 'é', 'ß', '✓', '😀', '中', ' ', '\u0301'];
    for (let i = 0; i < 20_000; i++) {
      const length = Math.floor(rand() * (i % 100 === 0 ? 600 : 12));
      let text = '';
      for (let j = 0; j < length; j++) text += alphabet[Math.floor(rand() * alphabet.length)];
      if (i % 3 === 0) text = String(Math.floor(rand() * 2 ** 53) - 2 ** 52);
      const expected = x86.hash32(Array.from(Buffer.from(text, 'utf8')), 0);
      expect(murmur3(text)).toBe(expected);
    }
  });

  it('honours the seed', () => {
    expect(murmur3('hello', 42)).toBe(x86.hash32(Array.from(Buffer.from('hello')), 42));
  });
});
