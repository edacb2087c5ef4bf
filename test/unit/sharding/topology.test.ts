import { createTopology } from '../../../src/cluster/topology';
import { slotOf } from '../../../src/cluster/slot-hash';
import { ErrorCodes } from '../../../src/kernel/errors';
import { TopologyError } from '../../../src/cluster/cluster-errors';

const url = (n: number) => `postgres://app:s3cret@db${n}.internal:5432/app`;
const shards = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `shard${i}`, primary: url(i) }));

function errorOf(fn: () => unknown): TopologyError {
  try {
    fn();
  } catch (error) {
    return error as TopologyError;
  }
  throw new Error('expected an error');
}

describe('topology', () => {
  it('assigns default ownership floor(s * N / slotCount) (contract 4)', () => {
    const t = createTopology({ shards: shards(3) });
    for (const s of [0, 1365, 1366, 2730, 2731, 4095]) expect(t.shardForSlot(s).index).toBe(Math.floor((s * 3) / 4096));
    expect(t.slotsOf('shard0')).toHaveLength(1366);
    expect(t.shardForKey(42).id).toBe(t.shardForSlot(slotOf(42)).id);
  });

  it('is frozen and versioned; moving slots yields a new version and leaves the old one unchanged', () => {
    const t = createTopology({ shards: shards(2) });
    expect(Object.isFrozen(t)).toBe(true);
    expect(Object.isFrozen(t.shards[0])).toBe(true);
    const moved = t.withSlotsMoved([0, 1], 'shard1');
    expect(moved.version).toBe(2);
    expect(moved.shardForSlot(0).id).toBe('shard1');
    expect(t.shardForSlot(0).id).toBe('shard0');
    const added = moved.withShardAdded({ id: 'shard2', primary: url(2) });
    expect(added.slotsOf('shard2')).toEqual([]);
    expect(added.version).toBe(3);
  });

  it('keeps passwords out of enumerable fields, JSON and inspection', () => {
    const t = createTopology({ shards: shards(1) });
    expect(t.shards[0]!.primary.url).toContain('s3cret');
    expect(JSON.stringify(t.shards)).not.toContain('s3cret');
    expect(require('node:util').inspect(t, { depth: 5 })).not.toContain('s3cret');
    expect(t.shards[0]!.primary.redactedUrl).toBe('postgres://app:***@db0.internal:5432/app');
  });

  it.each([
    ['no shards', { shards: [] }, /at least one shard/],
    ['duplicate ids', { shards: [{ id: 'a', primary: url(0) }, { id: 'a', primary: url(1) }] }, /Duplicate shard id "a"/],
    ['a malformed id', { shards: [{ id: 'a b', primary: url(0) }] }, /id must be/],
    ['a malformed URL', { shards: [{ id: 'a', primary: 'not a url' }] }, /not a valid URL/],
    ['a wrong scheme', { shards: [{ id: 'a', primary: 'mysql://x@h/db' }] }, /postgres:\/\//],
    ['unowned slots', { shards: shards(1), slotCount: 4, owners: ['shard0', 'shard0', 'shard0'] }, /every one of the 4 slots/],
    ['an owner that is no shard', { shards: shards(1), slotCount: 2, owners: ['shard0', 'ghost'] }, /Slot 1 is owned by "ghost"/],
    ['a bad slot count', { shards: shards(1), slotCount: 0 }, /slotCount/],
  ])('refuses %s with a message that says what to fix', (_name, input, message) => {
    const error = errorOf(() => createTopology(input as never));
    expect(error).toBeInstanceOf(TopologyError);
    expect(error.code).toBe(ErrorCodes.INVALID_TOPOLOGY);
    expect(error.message).toMatch(message);
  });

  it('never shows a password in a URL error', () => {
    const error = errorOf(() => createTopology({ shards: [{ id: 'a', primary: 'mysql://u:hunter2@h/db' }] }));
    expect(error.message).not.toContain('hunter2');
  });
});
