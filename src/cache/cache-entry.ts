import type { CacheEntry, TagStamp } from './memory-tier';

/**
 * The L2 form of an entry: a small text header then the serialized value, so reading the header
 * never parses the value twice:
 * `1|<freshUntil>|<staleUntil>|<nsEpoch>|<tags JSON or empty>|<value>`.
 */
const FORMAT = '1';

/** @internal */
export function encodeEntry(payload: string, freshUntil: number, staleUntil: number, nsEpoch: number, tags: readonly TagStamp[] | null): string {
  // A tag may contain `|`: escaped inside the JSON strings (where `\u007c` reads back as `|`), so
  // the header's separators stay unambiguous.
  const tagText = tags === null || tags.length === 0 ? '' : JSON.stringify(tags).replace(/\|/g, '\\u007c');
  return `${FORMAT}|${freshUntil}|${staleUntil}|${nsEpoch}|${tagText}|${payload}`;
}

/**
 * Header fields and the raw value text of an L2 entry; `null` for an unknown or damaged format (never throws).
 * @internal
 */
export interface DecodedHeader {
  readonly freshUntil: number;
  readonly staleUntil: number;
  readonly nsEpoch: number;
  readonly tags: readonly TagStamp[] | null;
  readonly payload: string;
}

/** @internal */
export function decodeEntry(text: string): DecodedHeader | null {
  const a = text.indexOf('|');
  if (text.slice(0, a) !== FORMAT) return null;
  const b = text.indexOf('|', a + 1);
  const c = text.indexOf('|', b + 1);
  const d = text.indexOf('|', c + 1);
  const e = text.indexOf('|', d + 1);
  if (e < 0) return null;
  const tagText = text.slice(d + 1, e);
  let tags: TagStamp[] | null = null;
  if (tagText !== '') {
    try {
      tags = JSON.parse(tagText) as TagStamp[];
    } catch {
      return null;
    }
    if (!Array.isArray(tags)) return null;
  }
  const freshUntil = Number(text.slice(a + 1, b));
  const staleUntil = Number(text.slice(b + 1, c));
  const nsEpoch = Number(text.slice(c + 1, d));
  if (Number.isNaN(freshUntil) || Number.isNaN(staleUntil) || Number.isNaN(nsEpoch)) return null;
  return { freshUntil, staleUntil, nsEpoch, tags, payload: text.slice(e + 1) };
}

/**
 * Freezes plain objects and arrays (not Buffers, Dates, Maps) so a cached value shared by callers cannot be changed in place.
 * @internal
 */
export function deepFreeze(value: unknown): void {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value) || ArrayBuffer.isView(value)) return;
  if (value instanceof Map) {
    for (const [k, v] of value) {
      deepFreeze(k);
      deepFreeze(v);
    }
    return;
  }
  if (value instanceof Set) {
    for (const v of value) deepFreeze(v);
    return;
  }
  if (value instanceof Date) return;
  Object.freeze(value);
  for (const k of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[k]);
}

export type { CacheEntry };
