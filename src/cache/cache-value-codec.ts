/** Values between callers and the tiers: serialized for L2, a frozen serializer round trip in L1. */
import { deepFreeze } from './cache-entry';
import type { CacheEntry, TagStamp } from './memory-tier';
import type { CacheSerializer } from './serializer';

/** @internal */
export class CacheValueCodec {
  constructor(
    private readonly serializer: CacheSerializer,
    private readonly freeze: boolean,
  ) {}

  /** The payload of `value`; throws `CacheValueTooLargeError` or `CacheSerializationError`. */
  serialize(value: unknown): string {
    return this.serializer.serialize(value);
  }

  /**
   * The value of a payload, deep-frozen unless `freezeValues` is off or `shared` is false (a value
   * no L1 keeps is not shared); throws on a damaged payload.
   */
  deserialize(payload: string, shared = true): unknown {
    const value = this.serializer.deserialize(payload);
    if (this.freeze && shared) deepFreeze(value);
    return value;
  }

  /** An L1 entry: L1 keeps what a round trip through the serializer gives, so L1 and L2 reads are identical. */
  l1Entry(payload: string, freshUntil: number, staleUntil: number, nsEpoch: number, tags: readonly TagStamp[] | null): CacheEntry {
    return { value: this.deserialize(payload), size: payload.length, freshUntil, staleUntil, nsEpoch, tags };
  }
}
