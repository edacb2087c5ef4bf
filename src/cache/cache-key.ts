/**
 * Cache keys, one rule for every call: a key is a string; a safe integer or a bigint is taken as
 * its base-10 text, the shard-key contract's rule, so `1`, `1n` and `'1'` are one entry in L1 and
 * in L2 alike (before, `1` and `'1'` shared an L2 key but not an L1 entry, so a `set('1')` left
 * another instance's L1 entry `1` stale). Anything else is refused with `CacheKeyError`.
 */
import { CacheKeyError } from './cache-errors';

/** What the cache accepts as a key. */
export type CacheKey = string | number | bigint;

/**
 * The canonical text of `key`; throws {@link CacheKeyError} for anything but a string, a safe
 * integer or a bigint. Callers on the hit path test `typeof key === 'string'` first.
 * @internal
 */
export function cacheKey(key: unknown): string {
  if (typeof key === 'string') return key;
  if (typeof key === 'number' && Number.isSafeInteger(key)) return String(key); // -0 is "0"
  if (typeof key === 'bigint') return key.toString();
  throw new CacheKeyError(key);
}

/**
 * The canonical texts of `keys`, which must be an array.
 * @internal
 */
export function cacheKeys(keys: readonly unknown[]): string[] {
  if (!Array.isArray(keys)) throw new CacheKeyError(keys, 'getMany, warmUp and invalidate take their keys as an array (one key: [key]); delete takes them as arguments');
  return keys.map(cacheKey);
}
