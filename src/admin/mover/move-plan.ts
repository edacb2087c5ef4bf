/**
 * Which slots go where: pure functions from a topology to a list of (source, target, slots)
 * batches. Operations choose the slots; the mover runs the batches one after another, each
 * published as its own topology version.
 */
import type { Topology } from '../../cluster/topology';
import { MoveRefusedError } from './mover-errors';

/** Slots moving from one shard to another. */
export interface SlotTransfer {
  readonly source: string;
  readonly target: string;
  readonly slots: readonly number[];
}

/** The default largest batch: more slots per batch means fewer table scans, fewer means shorter fences on smaller row sets. */
export const DEFAULT_BATCH_SLOTS = 1024;

/** Moves `slots` to `target`, grouped by their current owner (slots it already owns are skipped). */
export function planMoveSlots(topology: Topology, slots: readonly number[], target: string): SlotTransfer[] {
  requireShard(topology, target);
  const bySource = new Map<string, number[]>();
  for (const slot of slots) {
    if (!Number.isInteger(slot) || slot < 0 || slot >= topology.slotCount) {
      throw new MoveRefusedError('slot-range', `Slot ${slot} is out of range: this cluster has slots 0..${topology.slotCount - 1}.`, { slot });
    }
    const owner = topology.shardForSlot(slot).id;
    if (owner === target) continue;
    bySource.set(owner, [...(bySource.get(owner) ?? []), slot]);
  }
  return [...bySource].map(([source, s]) => Object.freeze({ source, target, slots: Object.freeze([...s].sort((a, b) => a - b)) }));
}

/** The slot count each shard should own for an even spread (the first shards take the remainder). */
export function evenShares(shardIds: readonly string[], slotCount: number): Map<string, number> {
  const base = Math.floor(slotCount / shardIds.length);
  const extra = slotCount % shardIds.length;
  return new Map(shardIds.map((id, i) => [id, base + (i < extra ? 1 : 0)]));
}

/**
 * Evens out slot counts over `shardIds` (every shard of the topology unless given): shards above
 * their share give their highest slots to shards below theirs. Slots of shards not in `shardIds`
 * (a shard being drained) all go.
 */
export function planRebalance(topology: Topology, shardIds: readonly string[] = topology.shards.map((s) => s.id)): SlotTransfer[] {
  if (shardIds.length === 0) throw new MoveRefusedError('last-shard', 'No shard would be left to own the slots.');
  const shares = evenShares(shardIds, topology.slotCount);
  const surplus: { id: string; slots: number[] }[] = [];
  const deficit: { id: string; need: number }[] = [];
  for (const shard of topology.shards) {
    const owned = topology.slotsOf(shard.id);
    const share = shares.get(shard.id) ?? 0;
    if (owned.length > share) surplus.push({ id: shard.id, slots: owned.slice(share) });
    else if (owned.length < share) deficit.push({ id: shard.id, need: share - owned.length });
  }
  const transfers = new Map<string, number[]>();
  for (const giver of surplus) {
    let at = 0;
    for (const taker of deficit) {
      if (at >= giver.slots.length) break;
      const n = Math.min(taker.need, giver.slots.length - at);
      if (n === 0) continue;
      const key = `${giver.id}\u0000${taker.id}`;
      transfers.set(key, [...(transfers.get(key) ?? []), ...giver.slots.slice(at, at + n)]);
      taker.need -= n;
      at += n;
    }
  }
  return [...transfers].map(([key, slots]) => {
    const [source, target] = key.split('\u0000') as [string, string];
    return Object.freeze({ source, target, slots: Object.freeze(slots) });
  });
}

/** Moves every slot of `shardId` to the other shards, evenly. */
export function planDrain(topology: Topology, shardId: string): SlotTransfer[] {
  requireShard(topology, shardId);
  const rest = topology.shards.map((s) => s.id).filter((id) => id !== shardId);
  if (rest.length === 0) throw new MoveRefusedError('last-shard', `"${shardId}" is the last shard: there is nowhere to move its slots.`, { shardId });
  return planRebalance(topology, rest);
}

/** Splits transfers into batches of at most `maxSlots` slots each. */
export function splitTransfers(transfers: readonly SlotTransfer[], maxSlots: number): SlotTransfer[] {
  return transfers.flatMap((t) => {
    const out: SlotTransfer[] = [];
    for (let i = 0; i < t.slots.length; i += maxSlots) out.push(Object.freeze({ source: t.source, target: t.target, slots: Object.freeze(t.slots.slice(i, i + maxSlots)) }));
    return out;
  });
}

function requireShard(topology: Topology, id: string): void {
  if (topology.shardById(id) === undefined) {
    throw new MoveRefusedError('unknown-shard', `No shard "${id}" in topology version ${topology.version} (shards: ${topology.shards.map((s) => s.id).join(', ')}).`, { shardId: id });
  }
}
