/**
 * PostgreSQL's text output of a value, read back into a key that orders and compares exactly as
 * PostgreSQL does. The merge reads the `expr::text` a shard returns beside each compared value, never
 * the value node-postgres parsed (a `Date` keeps milliseconds, PostgreSQL microseconds; an `int8`
 * parsed to a JS number loses digits). Each reader throws `E_UNSUPPORTED_SCATTER` (via
 * {@link incomparable}) on text it does not recognise rather than guess.
 *
 * Formats assumed: `DateStyle` ISO (node-postgres assumes it too), `IntervalStyle` postgres,
 * `bytea_output` hex; anything else is refused.
 *
 * @packageDocumentation
 */
import { ErrorCodes } from '../../kernel/errors';
import { RoutingError } from '../sharding-errors';

/** A RoutingError for a value the merge cannot compare exactly like PostgreSQL. */
export function incomparable(what: string): RoutingError {
  return new RoutingError(
    ErrorCodes.UNSUPPORTED_SCATTER,
    `Cannot merge this scatter query across shards: ${what}. ` + 'Add the shard key to the query, or run it on one shard with withShard(id).',
    { unsupported: what },
  );
}

/** Compares two numbers or bigints. */
export function compareScalars(a: number | bigint, b: number | bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const USECS_PER_DAY = 86_400_000_000n;
const USECS_PER_SECOND = 1_000_000n;
// Beyond every finite timestamp or interval: PostgreSQL's ±infinity.
const INFINITE = 1n << 96n;

/** Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 1 BC is year 0). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

function micros(fraction: string | undefined): bigint {
  return fraction === undefined ? 0n : BigInt(fraction.padEnd(6, '0'));
}

function timeMicros(hours: string, minutes: string, seconds: string, fraction: string | undefined): bigint {
  return (BigInt(hours) * 3600n + BigInt(minutes) * 60n + BigInt(seconds)) * USECS_PER_SECOND + micros(fraction);
}

/** Seconds east of UTC of an ISO offset (`+05`, `-03:30`, `+00:53:28`). */
function offsetSeconds(sign: string, hours: string, minutes: string | undefined, seconds: string | undefined): bigint {
  const magnitude = BigInt(hours) * 3600n + BigInt(minutes ?? '0') * 60n + BigInt(seconds ?? '0');
  return sign === '-' ? -magnitude : magnitude;
}

const OFFSET = '([+-])(\\d{2})(?::(\\d{2}))?(?::(\\d{2}))?';
const DATE_TIME = new RegExp(`^(\\d{4,})-(\\d{2})-(\\d{2})(?: (\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d{1,6}))?)?(?:${OFFSET})?( BC)?$`);

/** The number of `count` ASCII digits at `at` in `text`, or -1 if one is not a digit. */
function digits(text: string, at: number, count: number): number {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const d = text.charCodeAt(i) - 48; // NaN past the end
    if (!(d >= 0 && d <= 9)) return -1;
    value = value * 10 + d;
  }
  return value;
}

// Dates within this many days of 1970 (years 1697–2243) give microseconds below 2^53 even with a
// time and an offset, so a JS number holds them exactly.
const EXACT_NUMBER_DAYS = 100_000;
const USECS_PER_DAY_NUMBER = 86_400_000_000;

/**
 * {@link temporalKey} without a regular expression or BigInt for the common case (a four-digit AD
 * year near 1970, ISO DateStyle); `undefined` for anything else, which the general parser reads.
 */
function temporalKeyFast(text: string): number | undefined {
  const length = text.length;
  if (length < 10 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45) return undefined;
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 2);
  const day = digits(text, 8, 2);
  if (year < 0 || month < 0 || day < 0) return undefined;
  const days = daysFromCivil(year, month, day);
  if (days > EXACT_NUMBER_DAYS || days < -EXACT_NUMBER_DAYS) return undefined;
  let micros = days * USECS_PER_DAY_NUMBER;
  if (length === 10) return micros;
  // ' HH:MM:SS'
  if (length < 19 || text.charCodeAt(10) !== 32 || text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58) return undefined;
  const hours = digits(text, 11, 2);
  const minutes = digits(text, 14, 2);
  const seconds = digits(text, 17, 2);
  if (hours < 0 || minutes < 0 || seconds < 0) return undefined;
  micros += ((hours * 60 + minutes) * 60 + seconds) * 1_000_000;
  let at = 19;
  if (text.charCodeAt(at) === 46) {
    // '.f' to '.ffffff'
    let fraction = 0;
    let scale = 1_000_000;
    for (at++; at < length && scale > 1; at++) {
      const d = text.charCodeAt(at) - 48;
      if (!(d >= 0 && d <= 9)) break;
      scale /= 10;
      fraction += d * scale;
    }
    if (at === 20) return undefined;
    micros += fraction;
  }
  if (at === length) return micros;
  // '+HH', '+HH:MM' or '+HH:MM:SS'
  const sign = text.charCodeAt(at);
  if (sign !== 43 && sign !== 45) return undefined;
  const rest = length - at;
  if (rest !== 3 && rest !== 6 && rest !== 9) return undefined;
  let offset = 0;
  for (let part = at + 1; part < length; part += 3) {
    if (part > at + 1 && text.charCodeAt(part - 1) !== 58) return undefined;
    const value = digits(text, part, 2);
    if (value < 0) return undefined;
    offset = offset * 60 + value;
  }
  offset *= 60 ** ((9 - rest) / 3);
  return micros - (sign === 45 ? -offset : offset) * 1_000_000;
}

/**
 * `date`, `timestamp` and `timestamptz` as exact microseconds since 1970-01-01 UTC (a date as its
 * midnight): a number when it is a safe integer (years 1697–2243), else a bigint; the two compare
 * exactly with each other, and print alike. `infinity` sorts above and `-infinity` below every
 * other value.
 */
export function temporalKey(text: string, typeName: string): number | bigint {
  const fast = temporalKeyFast(text);
  if (fast !== undefined) return fast;
  if (text === 'infinity') return INFINITE;
  if (text === '-infinity') return -INFINITE;
  const m = DATE_TIME.exec(text);
  if (m === null) throw incomparable(`the ${typeName} value ${JSON.stringify(text)} is not in ISO DateStyle`);
  const year = m[12] === undefined ? Number(m[1]) : 1 - Number(m[1]);
  const days = BigInt(daysFromCivil(year, Number(m[2]), Number(m[3])));
  const time = m[4] === undefined ? 0n : timeMicros(m[4], m[5]!, m[6]!, m[7]);
  const offset = m[8] === undefined ? 0n : offsetSeconds(m[8], m[9]!, m[10], m[11]);
  return days * USECS_PER_DAY + time - offset * USECS_PER_SECOND;
}

const TIME_TZ = new RegExp(`^(\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d{1,6}))?${OFFSET}$`);

/** `timetz`: PostgreSQL orders by the UTC-equivalent time, then by zone (seconds west of UTC). */
export interface TimeTzKey {
  readonly utc: bigint;
  readonly zone: bigint;
}

export function timeTzKey(text: string): TimeTzKey {
  const m = TIME_TZ.exec(text);
  if (m === null) throw incomparable(`the time with time zone value ${JSON.stringify(text)} is not in ISO format`);
  const offset = offsetSeconds(m[5]!, m[6]!, m[7], m[8]);
  return { utc: timeMicros(m[1]!, m[2]!, m[3]!, m[4]) - offset * USECS_PER_SECOND, zone: -offset };
}

export function compareTimeTz(a: TimeTzKey, b: TimeTzKey): number {
  return compareScalars(a.utc, b.utc) || compareScalars(a.zone, b.zone);
}

const INTERVAL_PART = /([+-]?\d+) (year|mon|day)s?(?: |$)|([+-]?)(\d+):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/y;
const MONTHS: Readonly<Record<string, bigint>> = Object.freeze({ year: 12n, mon: 1n, day: 0n });

/**
 * `interval` (IntervalStyle postgres) as PostgreSQL compares it: a month counts 30 days and a day
 * 24 hours, so `1 mon`, `30 days` and `720:00:00` are equal.
 */
export function intervalKey(text: string): bigint {
  if (text === 'infinity') return INFINITE;
  if (text === '-infinity') return -INFINITE;
  let months = 0n;
  let days = 0n;
  let time = 0n;
  INTERVAL_PART.lastIndex = 0;
  while (INTERVAL_PART.lastIndex < text.length) {
    const m = INTERVAL_PART.exec(text);
    if (m === null) throw incomparable(`the interval value ${JSON.stringify(text)} is not in IntervalStyle postgres`);
    if (m[2] !== undefined) {
      const n = BigInt(m[1]!);
      if (m[2] === 'day') days += n;
      else months += n * MONTHS[m[2]]!;
    } else {
      const t = timeMicros(m[4]!, m[5]!, m[6]!, m[7]);
      time += m[3] === '-' ? -t : t;
    }
  }
  return (months * 30n + days) * USECS_PER_DAY + time;
}

/** `inet` / `cidr`: the family, the netmask length and the address bytes. */
export interface InetKey {
  readonly family: 4 | 6;
  readonly bits: number;
  readonly bytes: Uint8Array;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function ipv4Bytes(text: string): number[] | undefined {
  const m = IPV4.exec(text);
  if (m === null) return undefined;
  const bytes = m.slice(1).map(Number);
  return bytes.every((b) => b <= 255) ? bytes : undefined;
}

function ipv6Bytes(text: string): number[] | undefined {
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const pieces = part.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (i === pieces.length - 1 && piece.includes('.')) {
        const v4 = ipv4Bytes(piece);
        if (v4 === undefined) return undefined;
        out.push(v4[0]! * 256 + v4[1]!, v4[2]! * 256 + v4[3]!);
      } else if (/^[0-9a-f]{1,4}$/i.test(piece)) {
        out.push(parseInt(piece, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

export function inetKey(text: string, typeName: string): InetKey {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const v4 = ipv4Bytes(address);
  const bytes = v4 ?? ipv6Bytes(address);
  const maxBits = v4 === undefined ? 128 : 32;
  const bits = slash < 0 ? maxBits : Number(text.slice(slash + 1));
  if (bytes === undefined || !Number.isInteger(bits) || bits < 0 || bits > maxBits) {
    throw incomparable(`the ${typeName} value ${JSON.stringify(text)} is not an address PostgreSQL prints`);
  }
  return { family: v4 === undefined ? 6 : 4, bits, bytes: Uint8Array.from(bytes) };
}

/** Compares the first `bits` bits of two addresses (PostgreSQL's bitncmp). */
function compareBits(a: Uint8Array, b: Uint8Array, bits: number): number {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  const rest = bits & 7;
  if (rest === 0) return 0;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[whole]! & mask) - (b[whole]! & mask);
}

/** PostgreSQL's network_cmp: family, then the common network prefix, then the mask length, then the whole address. */
export function compareInet(a: InetKey, b: InetKey): number {
  if (a.family !== b.family) return a.family - b.family;
  return compareBits(a.bytes, b.bytes, Math.min(a.bits, b.bits)) || a.bits - b.bits || compareBits(a.bytes, b.bytes, a.bytes.length * 8);
}

/** An array literal: its elements in storage order (`null` for NULL), dimensions and lower bounds. */
export interface ArrayText {
  readonly elements: readonly (string | null)[];
  readonly dims: readonly number[];
  readonly lowerBounds: readonly number[];
}

const DIMENSIONS = /^((?:\[-?\d+:-?\d+\])+)=/;

/** Parses PostgreSQL's array output (`{1,2}`, `{{"a b",NULL}}`, `[0:1]={x,y}`); `undefined` if malformed. */
export function parseArrayText(text: string): ArrayText | undefined {
  let at = 0;
  let lowerBounds: number[] | undefined;
  const decorated = DIMENSIONS.exec(text);
  if (decorated !== null) {
    lowerBounds = [...decorated[1]!.matchAll(/\[(-?\d+):/g)].map((m) => Number(m[1]));
    at = decorated[0].length;
  }
  const elements: (string | null)[] = [];
  const dims: number[] = [];

  // One `{…}` list at `depth`: its items are lists (one level deeper) or elements; returns false if malformed.
  const list = (depth: number): boolean => {
    if (text[at] !== '{') return false;
    at++;
    let items = 0;
    if (text[at] === '}') {
      at++;
    } else {
      for (;;) {
        if (text[at] === '{') {
          if (!list(depth + 1)) return false;
        } else if (dims.length > depth + 1) {
          return false; // an element where a deeper list was found before
        } else if (text[at] === '"') {
          let value = '';
          for (at++; text[at] !== '"'; at++) {
            if (text[at] === '\\') at++;
            if (at >= text.length) return false;
            value += text[at];
          }
          at++;
          elements.push(value);
        } else {
          let end = at;
          while (end < text.length && text[end] !== ',' && text[end] !== '}') end++;
          const token = text.slice(at, end);
          if (token === '') return false;
          elements.push(token === 'NULL' ? null : token);
          at = end;
        }
        items++;
        if (text[at] === ',') at++;
        else if (text[at] === '}') {
          at++;
          break;
        } else return false;
      }
    }
    if (dims[depth] === undefined) dims[depth] = items;
    return dims[depth] === items;
  };
  if (!list(0) || at !== text.length) return undefined;
  // '{}' is an empty array of no dimensions.
  if (elements.length === 0) return dims.length === 1 && dims[0] === 0 && lowerBounds === undefined ? { elements, dims: [], lowerBounds: [] } : undefined;
  const bounds = lowerBounds ?? dims.map(() => 1);
  if (bounds.length !== dims.length) return undefined;
  return { elements, dims, lowerBounds: bounds };
}
