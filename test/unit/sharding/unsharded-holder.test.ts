/**
 * The holder of the unsharded tables as the topology records it: kept by every derived topology,
 * stored in the catalog's document (older documents without it keep meaning the dialect's
 * option), and followed by routing over the `unshardedShardId` option, at construction and on
 * every `setTopology`.
 */
import type { RootOperationNode } from 'kysely';
import { offlineKysely } from '../../support/offline-kysely';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { TopologyError } from '../../../src/cluster/cluster-errors';
import { fromDocument, toDocument } from '../../../src/admin/topology-document';
import { resolveShardedConfig } from '../../../src/sharding/dialect/sharded-dialect-config';
import { ShardedRuntime } from '../../../src/sharding/dialect/sharded-runtime';
import { planRoute, type RoutePlan } from '../../../src/sharding/routing/route-planner';

const shards = [0, 1, 2].map((i) => ({ id: `shard${i}`, primary: `postgres://u@h${i}:5432/db` }));
const v1 = createTopology({ shards, slotCount: 16 });
const db = offlineKysely();

function unshardedShard(topology: Topology, rules: ReturnType<typeof resolveShardedConfig>['rules']): string {
  const plan: RoutePlan = planRoute(db.selectFrom('countries').selectAll().toOperationNode() as RootOperationNode, undefined, topology, rules);
  if (plan.kind !== 'single') throw new Error(`expected one shard, got ${plan.kind}`);
  return plan.shard.id;
}

describe('holder of the unsharded tables in the topology', () => {
  it('is recorded, validated and kept by every derived topology', () => {
    expect(v1.unshardedShardId).toBeUndefined();
    const v2 = v1.withUnshardedShard('shard1');
    expect([v2.version, v2.unshardedShardId]).toEqual([2, 'shard1']);
    expect(v2.withSlotsMoved([0], 'shard2').unshardedShardId).toBe('shard1');
    expect(v2.withShardAdded({ id: 'shard3', primary: 'postgres://u@h3:5432/db' }).unshardedShardId).toBe('shard1');
    expect(() => v1.withUnshardedShard('nope')).toThrow(TopologyError);
    expect(() => createTopology({ shards, unshardedShardId: 'shard9' })).toThrow(/unshardedShardId must name a shard of the topology; got "shard9"/);
  });

  it('is stored in the catalog document only when recorded; an older document means "not recorded"', () => {
    const document = toDocument(v1);
    expect('unshardedShardId' in document).toBe(false);
    expect(fromDocument(JSON.parse(JSON.stringify(document))).unshardedShardId).toBeUndefined();
    const recorded = toDocument(v1.withUnshardedShard('shard2'));
    expect(recorded.unshardedShardId).toBe('shard2');
    expect(fromDocument(JSON.parse(JSON.stringify(recorded))).unshardedShardId).toBe('shard2');
    expect(() => fromDocument({ ...recorded, unshardedShardId: 7 })).toThrow(/unshardedShardId must be a shard id/);
    expect(() => fromDocument({ ...recorded, unshardedShardId: 'gone' })).toThrow(/unshardedShardId must name a shard/);
  });

  it('wins over the unshardedShardId option at construction (a process warning names both), and the option stays the default for topologies without it', () => {
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const recorded = v1.withUnshardedShard('shard2');
      expect(resolveShardedConfig({ topology: recorded, unshardedTables: ['countries'] }).rules.unshardedShardId).toBe('shard2');
      expect(warn).not.toHaveBeenCalled();
      const overridden = resolveShardedConfig({ topology: recorded, unshardedShardId: 'shard1', unshardedTables: ['countries'] });
      expect(overridden.rules.unshardedShardId).toBe('shard2');
      expect(overridden.defaultUnshardedShardId).toBe('shard1');
      // A topology that dropped the option's shard but records the holder is accepted at construction.
      const dropped = createTopology({ shards: shards.slice(1), slotCount: 16, unshardedShardId: 'shard1', version: 3 });
      expect(resolveShardedConfig({ topology: dropped, unshardedShardId: 'shard0' }).rules.unshardedShardId).toBe('shard1');
      expect(resolveShardedConfig({ topology: v1, unshardedShardId: 'shard1' }).rules.unshardedShardId).toBe('shard1');
      expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([
        expect.stringMatching(/unshardedShardId "shard1" is overridden: topology version 2 records shard "shard2"/),
        expect.stringMatching(/unshardedShardId "shard0" is overridden: topology version 3 records shard "shard1"/),
      ]);
    } finally {
      warn.mockRestore();
    }
  });

  it('is followed by a running dialect: routing moves to the recorded holder, which may drop the option\'s shard; a topology recording none keeps the option', () => {
    const runtime = new ShardedRuntime(resolveShardedConfig({ topology: v1, unshardedShardId: 'shard0', unshardedTables: ['countries'], createPool: () => ({}) as never, fenceSessions: false }));
    expect(unshardedShard(runtime.topology, runtime.rules)).toBe('shard0');
    runtime.setTopology(v1.withSlotsMoved([0], 'shard1'));
    expect(unshardedShard(runtime.topology, runtime.rules)).toBe('shard0');
    runtime.setTopology(runtime.topology.withUnshardedShard('shard2'));
    expect(unshardedShard(runtime.topology, runtime.rules)).toBe('shard2');
    // The drained shard leaves the topology: accepted, since the topology records the holder.
    const next = runtime.topology;
    const removed = createTopology({
      version: next.version + 1,
      slotCount: 16,
      shards: shards.slice(1),
      owners: next.ownerIds().map((id) => (id === 'shard0' ? 'shard1' : id)),
      unshardedShardId: 'shard2',
    });
    runtime.setTopology(removed);
    expect(unshardedShard(runtime.topology, runtime.rules)).toBe('shard2');
    // Without a record, a topology dropping the option's shard is still refused.
    const other = new ShardedRuntime(resolveShardedConfig({ topology: v1, unshardedTables: ['countries'], createPool: () => ({}) as never, fenceSessions: false }));
    expect(() => other.setTopology(createTopology({ version: 2, slotCount: 16, shards: shards.slice(1) }))).toThrow(/drops shard "shard0", which holds the unsharded tables, and records no other holder/);
    void runtime.destroy();
    void other.destroy();
  });
});
