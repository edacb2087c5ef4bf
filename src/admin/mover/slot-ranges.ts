/** Slot lists as operators write them: `0-1023,2048,4000-4095`. */
import { MoveRefusedError } from './mover-errors';

const PART = /^(\d+)(?:\s*-\s*(\d+))?$/;

/**
 * What is wrong with the shape of `text` (not a comma-separated list of whole numbers and
 * `first-last` ranges), naming the bad part; undefined when it is well formed. Needs no slot count,
 * so the CLI can call it a usage error before reading the catalog.
 */
export function slotRangesSyntaxProblem(text: string): string | undefined {
  if (text.trim() === '') return 'No slots given.';
  for (const raw of text.split(',')) {
    const part = raw.trim();
    if (part === '') return `${JSON.stringify(text)} has an empty part between commas (write slots as 0-1023,2048).`;
    const match = PART.exec(part);
    if (match === null) return `"${part}" is not a slot or a range of slots: slots are whole numbers in decimal (e.g. 0-1023,2048).`;
    if (match[2] !== undefined && BigInt(match[2]) < BigInt(match[1]!)) return `The range "${part}" ends before it starts.`;
  }
  return undefined;
}

/** Parses `first-last` ranges and single slots, comma-separated; refuses anything outside 0..slotCount-1. */
export function parseSlotRanges(text: string, slotCount: number): number[] {
  const problem = slotRangesSyntaxProblem(text);
  if (problem !== undefined) throw new MoveRefusedError('slot-range', problem, { slots: text });
  const slots = new Set<number>();
  for (const raw of text.split(',')) {
    const part = raw.trim();
    const match = PART.exec(part)!;
    // Compared as written (BigInt): a slot past 2^53 must not be rounded before it is quoted back.
    const lastText = match[2] ?? match[1]!;
    if (BigInt(lastText) >= BigInt(slotCount)) throw new MoveRefusedError('slot-range', `Slot ${lastText} is out of range: this cluster has slots 0..${slotCount - 1}.`, { slots: text, slotCount });
    const first = Number(match[1]);
    const last = Number(lastText);
    for (let s = first; s <= last; s++) slots.add(s);
  }
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
