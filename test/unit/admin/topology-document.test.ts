import { createTopology } from '../../../src/cluster/topology';
import { fromDocument, toDocument } from '../../../src/admin/topology-document';
import { TopologyError } from '../../../src/cluster/cluster-errors';

const topology = createTopology({
  shards: [
    { id: 'a', primary: 'postgres://u:secret@h1/db', replicas: ['postgres://u@h1r/db'] },
    { id: 'b', primary: 'postgres://u@h2/db' },
  ],
  version: 7,
});

describe('topology documents', () => {
  test('store ownership as ranges and read back the same topology', () => {
    const moved = topology.withSlotsMoved([0, 5, 4095], 'b');
    const doc = toDocument(moved);
    expect(doc.ranges).toEqual([
      [0, 0, 'b'],
      [1, 4, 'a'],
      [5, 5, 'b'],
      [6, 2047, 'a'],
      [2048, 4095, 'b'],
    ]);
    const back = fromDocument(JSON.parse(JSON.stringify(doc)));
    expect(back.version).toBe(8);
    expect(back.ownerIds()).toEqual(moved.ownerIds());
    expect(back.shards.map((s) => [s.id, s.primary.url, s.replicas.map((r) => r.url)])).toEqual([
      ['a', 'postgres://u:secret@h1/db', ['postgres://u@h1r/db']],
      ['b', 'postgres://u@h2/db', []],
    ]);
  });

  test('refuse ranges with gaps, overlaps or a short end, and shapes that are not documents', () => {
    const doc = toDocument(topology);
    const bad = [
      { ...doc, ranges: [[0, 10, 'a'], [12, 4095, 'b']] },
      { ...doc, ranges: [[0, 10, 'a'], [10, 4095, 'b']] },
      { ...doc, ranges: [[0, 4000, 'a']] },
      { ...doc, ranges: [[0, 4095, 'nope']] },
      null,
      { version: 1 },
    ];
    for (const document of bad) expect(() => fromDocument(document)).toThrow(TopologyError);
  });
});
