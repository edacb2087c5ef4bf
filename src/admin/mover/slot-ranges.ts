/** Slot lists as operators write them: `0-1023,2048,4000-4095`. */
import { MoveRefusedError } from './mover-errors';

/** Parses `first-last` ranges and single slots, comma-separated; refuses anything outside 0..slotCount-1. */
export function parseSlotRanges(text: string, slotCount: number): number[] {
  const slots = new Set<number>();
  for (const raw of text.split(',')) {
    const part = raw.trim();
    const match = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(part);
    if (match === null) throw new MoveRefusedError('slot-range', `"${part}" is not a slot or a range of slots (e.g. 0-1023,2048).`, { slots: text });
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    if (last < first) throw new MoveRefusedError('slot-range', `The range "${part}" ends before it starts.`, { slots: text });
    if (last >= slotCount) throw new MoveRefusedError('slot-range', `Slot ${last} is out of range: this cluster has slots 0..${slotCount - 1}.`, { slots: text, slotCount });
    for (let s = first; s <= last; s++) slots.add(s);
  }
  if (slots.size === 0) throw new MoveRefusedError('slot-range', 'No slots given.', { slots: text });
  return [...slots].sort((a, b) => a - b);
}

/** `0-3,7,9-10` for ascending or unordered slots. */
export function formatSlotRanges(slots: readonly number[]): string {
  const sorted = [...slots].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
