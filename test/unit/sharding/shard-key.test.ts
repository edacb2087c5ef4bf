/** Contract 1: the canonical text a shard key is hashed as, and the values refused. */
import { canonicalIntegerKey, canonicalUuidKey, encodeShardKey, MAX_SHARD_KEY_BYTES } from '../../../src/cluster/shard-key';
import { slotOf } from '../../../src/cluster/slot-hash';
import { ErrorCodes } from '../../../src/kernel/errors';
import { ShardKeyError } from '../../../src/cluster/cluster-errors';
import * as murmur from '../../../src/kernel/murmur3';

describe('shard key encoding (contract 1)', () => {
  it('encodes 42, 42n and "42" the same', () => {
    expect(encodeShardKey(42)).toBe('42');
    expect(encodeShardKey(42n)).toBe('42');
    expect(encodeShardKey('42')).toBe('42');
    expect(slotOf(42)).toBe(slotOf('42'));
    expect(slotOf(42n)).toBe(slotOf(42));
  });

  it('writes integers in base 10 without leading zeros, negatives and bigints beyond 2^53 included', () => {
    expect(encodeShardKey(-7)).toBe('-7');
    expect(encodeShardKey(-0)).toBe('0');
    expect(encodeShardKey(9007199254740993n)).toBe('9007199254740993');
    expect(encodeShardKey(1e3)).toBe('1000');
  });

  it('lower-cases UUIDs and keeps other strings as they are', () => {
    expect(encodeShardKey('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')).toBe('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    expect(encodeShardKey('Hello')).toBe('Hello');
    expect(encodeShardKey('007')).toBe('007');
  });

  it.each([[null], [undefined], [{}], [[1]], [1.5], [NaN], [Infinity], [2 ** 60], [true]])('refuses %p with E_INVALID_SHARD_KEY', (value) => {
    expect(() => encodeShardKey(value)).toThrow(ShardKeyError);
    try {
      encodeShardKey(value);
    } catch (error) {
      expect((error as ShardKeyError).code).toBe(ErrorCodes.INVALID_SHARD_KEY);
    }
  });
});

describe('shard key size bound', () => {
  it(`accepts keys up to ${MAX_SHARD_KEY_BYTES} bytes of UTF-8 and refuses longer ones`, () => {
    expect(encodeShardKey('k'.repeat(MAX_SHARD_KEY_BYTES))).toHaveLength(MAX_SHARD_KEY_BYTES);
    expect(() => encodeShardKey('k'.repeat(MAX_SHARD_KEY_BYTES + 1))).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_SHARD_KEY, context: { maxBytes: MAX_SHARD_KEY_BYTES } }));
    expect(() => encodeShardKey('é'.repeat(513))).toThrow(/longer than 1024 bytes/); // 1026 bytes in 513 characters
    expect(encodeShardKey('é'.repeat(512))).toHaveLength(512);
    expect(encodeShardKey(10n ** 1023n)).toHaveLength(1024);
    expect(() => encodeShardKey(10n ** 1024n)).toThrow(ShardKeyError);
    expect(() => encodeShardKey(-(10n ** 1023n))).toThrow(ShardKeyError); // the minus sign is the 1025th byte
  });

  it('refuses a 1 MB key at once, before parsing or hashing it', () => {
    const digits = '7'.repeat(1_000_000);
    const huge = 7n * 10n ** 100_000n;
    // Parsing (BigInt of 1 MB of digits: 0.4-0.5 s), measuring UTF-8 or hashing would each touch
    // the whole key; a refusal by length touches none of them. Watched on the real functions,
    // not timed: a wall-clock comparison failed once on a loaded CI machine (a 21 ms pause).
    const watched = [jest.spyOn(globalThis, 'BigInt'), jest.spyOn(Buffer, 'byteLength'), jest.spyOn(TextEncoder.prototype, 'encode'), jest.spyOn(murmur, 'murmur3')];
    const attempt = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (error) {
        return error;
      }
      return undefined;
    };
    let errors: unknown[];
    try {
      errors = [
        attempt(() => canonicalIntegerKey(digits, 'orders', 'user_id')),
        attempt(() => canonicalUuidKey(digits, 'sessions', 'id')),
        attempt(() => slotOf(digits)),
        attempt(() => slotOf(huge)),
      ];
      for (const spy of watched) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of watched) spy.mockRestore();
    }
    expect(errors[0]).toMatchObject({ code: ErrorCodes.INVALID_SHARD_KEY, context: { table: 'orders', column: 'user_id', maxBytes: 1024 } });
    for (const error of errors) expect(error).toBeInstanceOf(ShardKeyError);
  });
});
