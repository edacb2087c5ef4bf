import { ErrorCodes } from '../../../src/kernel/errors';
import { CacheSerializationError, CacheValueTooLargeError } from '../../../src/cache/cache-errors';
import { createSerializer } from '../../../src/cache/serializer';

describe('serializer', () => {
  const s = createSerializer({ maxValueBytes: 200 });
  it('round-trips Dates, BigInts, Buffers, Maps, Sets, special numbers and nesting', () => {
    const value = {
      at: new Date('2024-01-02T03:04:05.678Z'),
      big: 9007199254740993n,
      buf: Buffer.from([0, 1, 255]),
      m: new Map<unknown, unknown>([['k', { d: new Date(0) }]]),
      s: new Set([1, 'two']),
      arr: [1, undefined, NaN, -Infinity],
      $: 'a user key named $',
      nested: { deep: [{ $: { t: 'x' } }] },
    };
    const big = createSerializer();
    const back = big.deserialize(big.serialize(value)) as typeof value;
    expect(back).toEqual(value);
    expect(back.at).toBeInstanceOf(Date);
    expect(typeof back.big).toBe('bigint');
    expect(Buffer.isBuffer(back.buf)).toBe(true);
    expect(back.m.get('k')).toEqual({ d: new Date(0) });
    expect(s.deserialize(s.serialize(undefined))).toBeUndefined();
    expect(s.deserialize(s.serialize('plain'))).toBe('plain');
  });
  it('refuses values over the limit with a clear error', () => {
    const err = (() => {
      try {
        s.serialize('x'.repeat(500));
      } catch (e) {
        return e as CacheValueTooLargeError;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(CacheValueTooLargeError);
    expect(err!.code).toBe(ErrorCodes.CACHE_VALUE_TOO_LARGE);
    expect(err!.message).toMatch(/502 bytes.*200 bytes.*maxValueBytes/);
  });
  it('refuses functions and cycles, naming where', () => {
    expect(() => s.serialize({ a: { f: () => 1 } })).toThrow(/function \(at \$\.a\.f\)/);
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    expect(() => s.serialize(cyc)).toThrow(CacheSerializationError);
  });
  it('serializer: -0, __proto__ keys, user objects and strings that look like internal markers', () => {
    const s = createSerializer();
    expect(Object.is(s.deserialize(s.serialize(-0)), -0)).toBe(true);
    expect(Object.is((s.deserialize(s.serialize([-0, 0])) as number[])[0], -0)).toBe(true);
    const proto = JSON.parse('{"__proto__": {"polluted": 1}, "a": 1}') as object;
    const back = s.deserialize(s.serialize(proto)) as Record<string, unknown>;
    expect(Object.prototype.hasOwnProperty.call(back, '__proto__')).toBe(true);
    expect((back as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    const lookalikes = [{ $: 'd', v: 0 }, { $: 'b', v: '1' }, { $: 'u' }, { $: 'o', v: { $: 'M' } }, '{"$":"u"}', '$', { v: { $: 'S', v: [] } }];
    for (const v of lookalikes) expect(s.deserialize(s.serialize(v))).toEqual(v);
    expect(s.deserialize(s.serialize(null))).toBeNull();
    expect(s.deserialize(s.serialize({ a: undefined, b: null }))).toEqual({ b: null });
    // A damaged payload whose marker names an Object method is refused, not called.
    expect(() => s.deserialize('{"$":"toString","v":1}')).toThrow(CacheSerializationError);
  });

  it('typed arrays, DataView and ArrayBuffer come back as their own type with the same contents', () => {
    const s = createSerializer();
    const source = new ArrayBuffer(48);
    new Uint8Array(source).forEach((_, i, a) => (a[i] = i * 7));
    const views: ArrayBufferView[] = [
      new Float64Array([1.5, -0, NaN, Infinity, 2 ** 60]),
      new Float32Array([0.25, -3]),
      new Int8Array([-128, 127]),
      new Uint8Array([0, 255]),
      new Uint8ClampedArray([0, 255]),
      new Int16Array([-32768, 32767]),
      new Uint16Array([65535]),
      new Int32Array([-(2 ** 31)]),
      new Uint32Array([2 ** 32 - 1]),
      new BigInt64Array([-(2n ** 63n)]),
      new BigUint64Array([2n ** 64n - 1n]),
      new DataView(source, 8, 16),
      new Float64Array(source, 16, 2), // a window on a larger buffer: only its bytes travel
    ];
    for (const view of views) {
      const back = s.deserialize(s.serialize({ view })) as { view: ArrayBufferView };
      expect(Object.getPrototypeOf(back.view)).toBe(Object.getPrototypeOf(view));
      expect(back.view.byteLength).toBe(view.byteLength);
      expect(Buffer.from(back.view.buffer, back.view.byteOffset, back.view.byteLength)).toEqual(Buffer.from(view.buffer, view.byteOffset, view.byteLength));
    }
    const f64 = s.deserialize(s.serialize(new Float64Array([1.25, 2.5]))) as Float64Array;
    expect(f64).toBeInstanceOf(Float64Array);
    expect([...f64]).toEqual([1.25, 2.5]);
    const ab = s.deserialize(s.serialize(source)) as ArrayBuffer;
    expect(ab).toBeInstanceOf(ArrayBuffer);
    expect(Buffer.from(ab)).toEqual(Buffer.from(source));
    expect(Buffer.isBuffer(s.deserialize(s.serialize(Buffer.from([1, 2]))))).toBe(true);
    expect(() => s.serialize({ shared: new SharedArrayBuffer(8) })).toThrow(/Cannot cache a SharedArrayBuffer \(at \$\.shared\)/);
  });
});
