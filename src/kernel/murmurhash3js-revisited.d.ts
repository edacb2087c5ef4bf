// The package ships no types; this declares the one function kysely-scale uses.
declare module 'murmurhash3js-revisited' {
  export const x86: {
    /** MurmurHash3 x86 32-bit over bytes (each 0..255), as an unsigned 32-bit integer. */
    hash32(bytes: ArrayLike<number>, seed?: number): number;
  };
}
