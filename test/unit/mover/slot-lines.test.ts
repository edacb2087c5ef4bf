import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SlotLines, slotOfKeyField, slotSet, unescapeCopyText } from '../../../src/admin/mover/slot-lines';
import { slotOf } from '../../../src/cluster/slot-hash';

const field = (text: string): Buffer => Buffer.from(text, 'utf8');

describe('slot lines', () => {
  test('a COPY key field has the slot the router gives its key', () => {
    for (const key of ['0', '42', '-7', '9007199254740993', 'alice', 'été', '0f8fad5b-d9cb-469f-a165-70867728950e']) {
      expect(slotOfKeyField(field(key), 4096)).toBe(slotOf(key, 4096));
    }
    // Upper-case UUID text is lower-cased (as the SQL twin does); COPY escapes are undone first.
    expect(slotOfKeyField(field('0F8FAD5B-D9CB-469F-A165-70867728950E'), 4096)).toBe(slotOf('0f8fad5b-d9cb-469f-a165-70867728950e', 4096));
    expect(slotOfKeyField(field('a\\tb\\\\c'), 4096)).toBe(slotOf('a\tb\\c', 4096));
    expect(slotOfKeyField(field('\\N'), 4096)).toBeUndefined();
  });

  test('COPY text escapes are undone', () => {
    expect(unescapeCopyText('plain')).toBe('plain');
    expect(unescapeCopyText('a\\nb\\rc\\td\\\\e\\101\\x42')).toBe('a\nb\rc\td\\eAB');
  });

  test('keeps the rows of the chosen slots, without the key field, across chunk boundaries', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => String(i));
    const wanted = new Set(keys.filter((k) => slotOf(k, 16) < 4));
    const text = keys.map((k) => `${k}\t${k}\tname ${k}\n`).join('');
    // Chunks of 7 bytes: rows are split anywhere, key fields included.
    const chunks = Array.from({ length: Math.ceil(text.length / 7) }, (_, i) => Buffer.from(text.slice(i * 7, i * 7 + 7)));
    const lines = new SlotLines({ slots: slotSet([0, 1, 2, 3], 16), slotCount: 16, forward: true });
    let out = '';
    await pipeline(Readable.from(chunks), lines, new Writable({ write: (c: Buffer, _e, cb) => ((out += c.toString()), cb()) }));
    expect(out).toBe([...wanted].map((k) => `${k}\tname ${k}\n`).join(''));
    expect(lines.scanned).toBe(200);
    expect(lines.kept).toBe(wanted.size);
    expect(wanted.size).toBeGreaterThan(20);
    expect(wanted.size).toBeLessThan(100);
  });

  test('a row of several MB split over many chunks comes out whole, with the rows around it', async () => {
    const big = 'x'.repeat(4 << 20);
    const text = `1\t1\tsmall\n2\t2\t${big}\n3\t3\tsmall\n`;
    const buffer = Buffer.from(text);
    const chunks = Array.from({ length: Math.ceil(buffer.length / 16384) }, (_, i) => buffer.subarray(i * 16384, i * 16384 + 16384));
    const lines = new SlotLines({ slots: slotSet(undefined, 16), slotCount: 16, forward: true });
    const out: Buffer[] = [];
    await pipeline(Readable.from(chunks), lines, new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
    expect(Buffer.concat(out).toString()).toBe(`1\tsmall\n2\t${big}\n3\tsmall\n`);
    expect(lines.scanned).toBe(3);
  });

  test('a stream that ends inside a row fails', async () => {
    const lines = new SlotLines({ slots: slotSet(undefined, 16), slotCount: 16, forward: true });
    await expect(pipeline(Readable.from([Buffer.from('1\ta\n2\tb')]), lines, new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow('inside a row');
  });
});
