/**
 * Picking a table's rows by slot in the mover instead of in PostgreSQL. The SQL twin of the slot
 * hash is PL/pgSQL (contract 5): evaluated for every row of a scan it costs the shard several
 * microseconds of CPU per row, for the rows that do not move as well, and a move scans whole tables
 * several times (copy, verification, clean-up). That CPU is taken from the app's statements on the
 * same server. Here the shard only streams `COPY (select key::text, … from t) TO STDOUT` (a plain
 * sequential scan) and the mover hashes each row's key with the router's own function.
 *
 * Each COPY text line starts with the key's text, then a tab, then the rest of the line. The key's
 * slot is computed exactly as the SQL twin computes it from `key::text`: COPY escapes undone, text
 * that looks like a UUID lower-cased, MurmurHash3 over its UTF-8 bytes.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { murmur3, murmur3Bytes } from '../../kernel/murmur3';

/** Slots a scan keeps: `set[slot] === 1`. */
export type SlotSet = Uint8Array;

/** The {@link SlotSet} of `slots` (every slot when `slots` is undefined). */
export function slotSet(slots: Iterable<number> | undefined, slotCount: number): SlotSet {
  const set = new Uint8Array(slotCount);
  if (slots === undefined) set.fill(1);
  else for (const s of slots) set[s] = 1;
  return set;
}

const BACKSLASH = 92;
const TAB = 9;
const NEWLINE = 10;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ESCAPES: Readonly<Record<string, string>> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/** A COPY text field as the value it stands for (`\N`, NULL, is the caller's to check). */
export function unescapeCopyText(field: string): string {
  if (!field.includes('\\')) return field;
  return field.replace(/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return ESCAPES[e] ?? e;
  });
}

/** The slot of a key given as a COPY text field of `key::text`; undefined for NULL (the SQL twin is STRICT: no slot). */
export function slotOfKeyField(field: Uint8Array, slotCount: number): number | undefined {
  if (field.length === 2 && field[0] === BACKSLASH && field[1] === 78) return undefined;
  // Fast path: no escape and no upper-case hex digit, so the bytes are already the canonical text.
  let plain = true;
  for (let i = 0; i < field.length; i++) {
    const b = field[i]!;
    if (b === BACKSLASH || (b >= 65 && b <= 70)) {
      plain = false;
      break;
    }
  }
  if (plain) return murmur3Bytes(field, field.length) % slotCount;
  let text = unescapeCopyText(Buffer.from(field.buffer, field.byteOffset, field.length).toString('utf8'));
  if (UUID.test(text)) text = text.toLowerCase();
  return murmur3(text) % slotCount;
}

/** What {@link SlotLines} does with each kept row: `key` is the key's COPY text field, `rest` the line after it (no newline). */
export type KeptRow = (slot: number, key: Buffer, rest: Buffer) => void;

/** Options of {@link SlotLines}. */
export interface SlotLinesOptions {
  readonly slots: SlotSet;
  readonly slotCount: number;
  /** Pass each kept row's `rest` on (a COPY into the target): true; only call `onRow`: false. */
  readonly forward: boolean;
  readonly onRow?: KeptRow;
}

/**
 * A transform over COPY text lines led by the key's text: keeps the rows of the slots in `slots`,
 * calling `onRow` for each and, when `forward`, passing on the line without its key field.
 */
export class SlotLines extends Transform {
  readonly #options: SlotLinesOptions;
  // The unfinished row: its chunks so far, joined once its newline arrives (a multi-MB row is
  // neither copied nor searched again with every chunk).
  #partial: Buffer[] = [];
  #partialLength = 0;
  #scanned = 0;
  #kept = 0;
  #nullKeys = 0;

  constructor(options: SlotLinesOptions) {
    super();
    this.#options = options;
  }

  /** Rows read from the shard so far. */
  get scanned(): number {
    return this.#scanned;
  }

  /** Rows kept so far. */
  get kept(): number {
    return this.#kept;
  }

  /** Rows read whose key is NULL (no slot owns them), so far. */
  get nullKeys(): number {
    return this.#nullKeys;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const newline = chunk.indexOf(NEWLINE);
    if (newline === -1) {
      this.#partial.push(chunk);
      this.#partialLength += chunk.length;
      callback();
      return;
    }
    const data = this.#partial.length === 0 ? chunk : Buffer.concat([...this.#partial, chunk]);
    const first = this.#partialLength + newline;
    this.#partial = [];
    this.#partialLength = 0;
    const { slots, slotCount, forward, onRow } = this.#options;
    const out: Buffer[] = [];
    let start = 0;
    for (let end = first; end !== -1; start = end + 1, end = data.indexOf(NEWLINE, start)) {
      this.#scanned++;
      let tab = data.indexOf(TAB, start);
      if (tab === -1 || tab > end) tab = end; // a key with no other column
      const key = data.subarray(start, tab);
      const slot = slotOfKeyField(key, slotCount);
      if (slot === undefined) this.#nullKeys++;
      if (slot === undefined || slots[slot] !== 1) continue;
      this.#kept++;
      onRow?.(slot, key, data.subarray(Math.min(tab + 1, end), end));
      if (forward) out.push(data.subarray(tab + 1, end + 1));
    }
    if (start < data.length) {
      this.#partial.push(Buffer.from(data.subarray(start)));
      this.#partialLength = data.length - start;
    }
    if (out.length > 0) this.push(Buffer.concat(out));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    // COPY TO ends every row with a newline: anything left is a truncated stream.
    callback(this.#partialLength === 0 ? null : new Error('COPY stream ended inside a row'));
  }
}
