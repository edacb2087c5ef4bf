import { requireInteger, requireKnownKeys, requireObject } from '../kernel/validate';
import { CacheSerializationError, CacheValueTooLargeError } from './cache-errors';

/**
 * Turns cache values into text and back. One serializer serves both tiers: L1 keeps the value that
 * came back from a round trip, so a value read from L1 equals the one read from L2.
 */
export interface CacheSerializer {
  /** Encodes `value`; throws {@link CacheValueTooLargeError} over the size limit, {@link CacheSerializationError} for unsupported values. */
  serialize(value: unknown): string;
  /** Decodes text produced by {@link CacheSerializer.serialize}. */
  deserialize(text: string): unknown;
}

/** Options of {@link createSerializer}. */
export interface SerializerOptions {
  /**
   * Largest serialized value accepted, in UTF-8 bytes; larger values are refused with {@link CacheValueTooLargeError}.
   * @default 1_048_576 (1 MiB)
   */
  maxValueBytes?: number;
}

/** Defaults of {@link SerializerOptions}. */
export const SERIALIZER_DEFAULTS: Readonly<Required<SerializerOptions>> = Object.freeze({ maxValueBytes: 1_048_576 });

// Tagged encodings are objects whose only marker key is `$`; a user object that has its own `$`
// key is wrapped as `{ $: 'o', v: … }` so it can never be mistaken for a tag.
const TAG = '$';
type Encoded = null | boolean | number | string | Encoded[] | { [k: string]: Encoded };

// Typed arrays and DataView come back as their own type over a fresh ArrayBuffer, in the platform's
// byte order (little-endian on every platform Node supports). A Buffer comes back as a Buffer.
const VIEWS = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
} as const;
type ViewName = keyof typeof VIEWS;

function viewName(view: ArrayBufferView, path: string): ViewName {
  // The built-in tag, not the constructor's name: a subclass of Float64Array is a Float64Array here.
  const tag = Object.prototype.toString.call(view).slice(8, -1);
  if (!Object.prototype.hasOwnProperty.call(VIEWS, tag)) throw new CacheSerializationError(`Cannot cache a ${tag} (at ${path})`, { path });
  return tag as ViewName;
}

function bytesOf(buffer: ArrayBufferLike, offset: number, length: number): string {
  return Buffer.from(buffer, offset, length).toString('base64');
}

function freshBuffer(base64: string): ArrayBuffer {
  const bytes = Buffer.from(base64, 'base64');
  const out = new ArrayBuffer(bytes.length);
  new Uint8Array(out).set(bytes);
  return out;
}

function decodeView(v: unknown): unknown {
  const [name, base64] = v as [string, string];
  if (!Object.prototype.hasOwnProperty.call(VIEWS, name)) throw new CacheSerializationError(`Unknown typed array \`${String(name)}\` in a cache entry`);
  // Every view constructor takes an ArrayBuffer; TypeScript cannot unify their signatures.
  const View = VIEWS[name as ViewName] as unknown as new (buffer: ArrayBuffer) => ArrayBufferView;
  return new View(freshBuffer(base64));
}

function encode(value: unknown, path: string, seen: Set<object>): Encoded | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      // JSON writes -0 as 0: tag it, like NaN and ±Infinity.
      return Number.isFinite(value) && !Object.is(value, -0) ? value : { $: 'n', v: Object.is(value, -0) ? '-0' : String(value) };
    case 'bigint':
      return { $: 'b', v: value.toString() };
    case 'undefined':
      return undefined;
    case 'function':
    case 'symbol':
      throw new CacheSerializationError(`Cannot cache a ${typeof value} (at ${path})`, { path });
    case 'object':
      break;
  }
  if (value === null) return null;
  const obj = value as object;
  if (seen.has(obj)) throw new CacheSerializationError(`Cannot cache a circular reference (at ${path})`, { path });
  if (obj instanceof Date) {
    const ms = obj.getTime();
    return { $: 'd', v: Number.isNaN(ms) ? null : ms };
  }
  if (Buffer.isBuffer(obj)) return { $: 'B', v: obj.toString('base64') };
  if (ArrayBuffer.isView(obj)) return { $: 'T', v: [viewName(obj, path), bytesOf(obj.buffer, obj.byteOffset, obj.byteLength)] };
  if (obj instanceof ArrayBuffer) return { $: 'A', v: bytesOf(obj, 0, obj.byteLength) };
  if (Object.prototype.toString.call(obj) === '[object SharedArrayBuffer]') {
    throw new CacheSerializationError(`Cannot cache a SharedArrayBuffer (at ${path}): copy it into an ArrayBuffer`, { path });
  }
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      const out: Encoded[] = new Array(obj.length);
      for (let i = 0; i < obj.length; i++) {
        const e = encode(obj[i], `${path}[${i}]`, seen);
        out[i] = e === undefined ? { $: 'u' } : e;
      }
      return out;
    }
    if (obj instanceof Map) {
      const entries: Encoded[] = [];
      for (const [k, v] of obj) {
        const ek = encode(k, `${path}<key>`, seen);
        const ev = encode(v, `${path}.get(…)`, seen);
        entries.push([ek === undefined ? { $: 'u' } : ek, ev === undefined ? { $: 'u' } : ev]);
      }
      return { $: 'M', v: entries };
    }
    if (obj instanceof Set) {
      const items: Encoded[] = [];
      for (const v of obj) {
        const ev = encode(v, `${path}<item>`, seen);
        items.push(ev === undefined ? { $: 'u' } : ev);
      }
      return { $: 'S', v: items };
    }
    // Null prototype: an own key named `__proto__` stays a plain property instead of setting the prototype.
    const out: { [k: string]: Encoded } = Object.create(null) as { [k: string]: Encoded };
    for (const k of Object.keys(obj)) {
      const e = encode((obj as Record<string, unknown>)[k], `${path}.${k}`, seen);
      if (e !== undefined) out[k] = e; // like JSON: undefined properties are dropped
    }
    return Object.prototype.hasOwnProperty.call(out, TAG) ? { $: 'o', v: out } : out;
  } finally {
    seen.delete(obj);
  }
}

type Decoder = (v: unknown) => unknown;
// Null prototype: a damaged `$` value such as `toString` finds no decoder instead of an Object method.
const decoders: Record<string, Decoder> = {
  n: (v) => Number(v),
  b: (v) => BigInt(v as string),
  u: () => undefined,
  d: (v) => new Date(v === null ? NaN : (v as number)),
  B: (v) => Buffer.from(v as string, 'base64'),
  T: decodeView,
  A: (v) => freshBuffer(v as string),
  M: (v) => new Map((v as unknown[][]).map(([k, x]) => [decode(k), decode(x)])),
  S: (v) => new Set((v as unknown[]).map(decode)),
  o: (v) => decodeObject(v as Record<string, unknown>),
};
Object.setPrototypeOf(decoders, null);

function decodeObject(obj: Record<string, unknown>): Record<string, unknown> {
  for (const k in obj) {
    const v = obj[k];
    if (typeof v === 'object' && v !== null) obj[k] = decode(v);
  }
  return obj;
}

function decode(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (typeof v === 'object' && v !== null) value[i] = decode(v);
    }
    return value;
  }
  if (Object.prototype.hasOwnProperty.call(value, TAG)) {
    const tag = (value as Record<string, unknown>)[TAG];
    const decoder = typeof tag === 'string' ? decoders[tag] : undefined;
    if (decoder === undefined) throw new CacheSerializationError(`Unknown cache encoding tag \`${String(tag)}\``);
    return decoder((value as Record<string, unknown>).v);
  }
  return decodeObject(value as Record<string, unknown>);
}

/**
 * The JSON-based serializer of kysely-scale: keeps `Date`, `BigInt`, `Buffer`, typed arrays
 * (`Uint8Array`, `Float64Array`, … and `DataView`, each read back as its own type), `ArrayBuffer`,
 * `Map`, `Set`, `undefined` in arrays, `NaN`/`±Infinity`/`-0`, and nested combinations; class
 * instances come back as plain objects (as with JSON). A `SharedArrayBuffer` is refused.
 */
export function createSerializer(options: SerializerOptions = {}): CacheSerializer {
  requireKnownKeys('serializer', requireObject('serializer', options), Object.keys(SERIALIZER_DEFAULTS));
  const maxValueBytes = requireInteger('serializer.maxValueBytes', options.maxValueBytes ?? SERIALIZER_DEFAULTS.maxValueBytes, 1);
  return Object.freeze({
    serialize(value: unknown): string {
      const encoded = encode(value, '$', new Set());
      const text = encoded === undefined ? '{"$":"u"}' : JSON.stringify(encoded);
      // Cheap upper bound first: a UTF-16 string never takes more than 3 bytes per unit in UTF-8.
      if (text.length * 3 > maxValueBytes) {
        const bytes = Buffer.byteLength(text, 'utf8');
        if (bytes > maxValueBytes) throw new CacheValueTooLargeError(bytes, maxValueBytes);
      }
      return text;
    },
    deserialize(text: string): unknown {
      return decode(JSON.parse(text));
    },
  });
}
