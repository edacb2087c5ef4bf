import { x86 } from 'murmurhash3js-revisited';

const utf8 = new TextEncoder();

/** MurmurHash3 x86 32-bit, seed 0 by default, over the UTF-8 bytes of `text`; an unsigned 32-bit integer. */
export function murmur3(text: string, seed = 0): number {
  return x86.hash32(utf8.encode(text), seed);
}
