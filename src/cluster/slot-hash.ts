import { murmur3 } from '../kernel/murmur3';
import { encodeShardKey } from './shard-key';

/** The slot count of a cluster unless it was created with another (contract 3). */
export const DEFAULT_SLOT_COUNT = 4096;

/** The slot of a shard key: MurmurHash3 x86 32-bit (seed 0) of its canonical UTF-8 text, modulo `slotCount`. */
export function slotOf(key: unknown, slotCount: number = DEFAULT_SLOT_COUNT): number {
  return murmur3(encodeShardKey(key)) % slotCount;
}
