const utf8 = new TextEncoder();
// Reused for short keys so hashing allocates nothing; longer texts get their own buffer.
const scratch = new Uint8Array(1024);

/**
 * MurmurHash3 x86 32-bit over the UTF-8 bytes of `text` (seed 0 by default), as an unsigned 32-bit
 * integer. Bit-for-bit the same as `murmurhash3js-revisited`'s `x86.hash32` (a unit test holds the
 * two together); written with `Math.imul` because it runs for every routed query.
 */
export function murmur3(text: string, seed = 0): number {
  // ASCII (integer keys, UUIDs, most ids) is its own UTF-8: copying the char codes is cheaper than a call to the encoder.
  const n = text.length;
  if (n <= scratch.length) {
    let i = 0;
    for (; i < n; i++) {
      const code = text.charCodeAt(i);
      if (code > 0x7f) break;
      scratch[i] = code;
    }
    if (i === n) return murmur3Bytes(scratch, n, seed);
  }
  let bytes: Uint8Array;
  let length: number;
  if (text.length * 3 <= scratch.length) {
    length = utf8.encodeInto(text, scratch).written;
    bytes = scratch;
  } else {
    bytes = utf8.encode(text);
    length = bytes.length;
  }
  return murmur3Bytes(bytes, length, seed);
}

/** MurmurHash3 x86 32-bit over the first `length` bytes of `bytes`. */
export function murmur3Bytes(bytes: Uint8Array, length = bytes.length, seed = 0): number {
  let h = seed | 0;
  const tail = length & ~3;
  let k: number;
  for (let i = 0; i < tail; i += 4) {
    k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = length & 3;
  if (rest > 0) {
    k = 0;
    if (rest === 3) k ^= bytes[tail + 2]! << 16;
    if (rest >= 2) k ^= bytes[tail + 1]! << 8;
    k ^= bytes[tail]!;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
