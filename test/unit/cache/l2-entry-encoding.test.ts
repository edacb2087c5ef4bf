import { decodeEntry, encodeEntry } from '../../../src/cache/cache-entry';

describe('L2 entry encoding', () => {
  it('L2 entries keep tags containing `|`, and a damaged header decodes as nothing instead of throwing', () => {
    const text = encodeEntry('"v"', 10, 20, 7, [['a|b', 3]]);
    expect(decodeEntry(text)).toEqual({ freshUntil: 10, staleUntil: 20, nsEpoch: 7, tags: [['a|b', 3]], payload: '"v"' });
    expect(decodeEntry('1|10|20|7|[["a|b",3]]|"v"')).toBeNull();
    expect(decodeEntry('1|x|20|7||"v"')).toBeNull();
  });

});
