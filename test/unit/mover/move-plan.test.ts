import { createTopology } from '../../../src/cluster/topology';
import { evenShares, planDrain, planMoveSlots, planRebalance, splitTransfers } from '../../../src/admin/mover/move-plan';
import { MoveRefusedError } from '../../../src/admin/mover/mover-errors';

const shards = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `s${i}`, primary: `postgres://u@h${i}/db` }));

function applyTransfers(owners: string[], transfers: ReturnType<typeof planRebalance>): string[] {
  const out = [...owners];
  for (const t of transfers) for (const s of t.slots) out[s] = t.target;
  return out;
}

describe('move plans', () => {
  test('moving slots groups them by current owner and skips those the target owns', () => {
    const t = createTopology({ shards: shards(2), slotCount: 8 });
    expect(planMoveSlots(t, [0, 1, 5, 6], 's1')).toEqual([{ source: 's0', target: 's1', slots: [0, 1] }]);
    expect(() => planMoveSlots(t, [0], 'nope')).toThrow(MoveRefusedError);
    expect(() => planMoveSlots(t, [8], 's1')).toThrow(/out of range/);
  });

  test('rebalance after adding a shard gives it an even share and leaves every shard within one slot', () => {
    const t = createTopology({ shards: shards(3), slotCount: 4096 }).withShardAdded({ id: 's3', primary: 'postgres://u@h3/db' });
    const transfers = planRebalance(t);
    const owners = applyTransfers(t.ownerIds(), transfers);
    const counts = ['s0', 's1', 's2', 's3'].map((id) => owners.filter((o) => o === id).length);
    expect(counts).toEqual([1024, 1024, 1024, 1024]);
    expect(transfers.every((x) => x.target === 's3')).toBe(true);
  });

  test('drain moves every slot of the shard to the others evenly, and refuses the last shard', () => {
    const t = createTopology({ shards: shards(3), slotCount: 9 });
    const owners = applyTransfers(t.ownerIds(), planDrain(t, 's1'));
    expect(owners.filter((o) => o === 's1')).toHaveLength(0);
    expect(evenShares(['s0', 's2'], 9)).toEqual(new Map([['s0', 5], ['s2', 4]]));
    expect(owners.filter((o) => o === 's0')).toHaveLength(5);
    const one = createTopology({ shards: shards(1), slotCount: 4 });
    expect(() => planDrain(one, 's0')).toThrow(expect.objectContaining({ reason: 'last-shard' }));
  });

  test('transfers are split into batches of at most the given size', () => {
    const batches = splitTransfers([{ source: 'a', target: 'b', slots: [1, 2, 3, 4, 5] }], 2);
    expect(batches.map((b) => b.slots)).toEqual([[1, 2], [3, 4], [5]]);
  });
});
