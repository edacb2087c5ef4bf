import { TopologyError } from '../cluster/cluster-errors';
import { createTopology, type Topology } from '../cluster/topology';

// The largest slot count a topology accepts (its owners are 16-bit indexes).
const MAX_SLOT_COUNT = 65536;

/**
 * A topology as stored in the catalog: plain JSON, slot ownership as ascending ranges (4,096
 * owner ids would be ~30 KB; a few ranges say the same). Connection URLs are stored as given, so
 * prefer URLs without passwords (credentials from PGPASSWORD or ~/.pgpass) for a catalog.
 */
export interface TopologyDocument {
  readonly version: number;
  readonly slotCount: number;
  readonly shards: readonly { readonly id: string; readonly primary: string; readonly replicas: readonly string[] }[];
  /** `[firstSlot, lastSlot, shardId]`, ascending, covering every slot once. */
  readonly ranges: readonly (readonly [number, number, string])[];
  /**
   * The shard holding the unsharded tables (written once a drain moved them). Absent in older
   * documents: routers then use their `unshardedShardId` option (default the first shard).
   */
  readonly unshardedShardId?: string;
}

/** The document of a topology. */
export function toDocument(topology: Topology): TopologyDocument {
  const owners = topology.ownerIds();
  const ranges: [number, number, string][] = [];
  for (let slot = 0; slot < owners.length; slot++) {
    const last = ranges[ranges.length - 1];
    if (last !== undefined && last[2] === owners[slot]) last[1] = slot;
    else ranges.push([slot, slot, owners[slot]!]);
  }
  return {
    version: topology.version,
    slotCount: topology.slotCount,
    shards: topology.shards.map((s) => ({ id: s.id, primary: s.primary.url, replicas: s.replicas.map((r) => r.url) })),
    ranges,
    ...(topology.unshardedShardId === undefined ? {} : { unshardedShardId: topology.unshardedShardId }),
  };
}

/** The topology a document describes; a malformed document fails with {@link TopologyError}. */
export function fromDocument(document: unknown): Topology {
  const doc = document as Partial<TopologyDocument> | null;
  const malformed = (what: string): TopologyError => new TopologyError(`The catalog holds a malformed topology document: ${what}.`);
  if (doc === null || typeof doc !== 'object' || !Array.isArray(doc.ranges) || !Array.isArray(doc.shards)) throw malformed('expected { version, slotCount, shards, ranges }');
  if (!Number.isSafeInteger(doc.version) || doc.version! < 1) throw malformed(`version must be a positive integer, not ${JSON.stringify(doc.version)}`);
  if (!Number.isInteger(doc.slotCount) || doc.slotCount! < 1 || doc.slotCount! > MAX_SLOT_COUNT) throw malformed(`slotCount must be an integer from 1 to ${MAX_SLOT_COUNT}`);
  for (const shard of doc.shards) {
    if (shard === null || typeof shard !== 'object' || !Array.isArray(shard.replicas) || !(shard.replicas as unknown[]).every((r) => typeof r === 'string')) {
      throw malformed('every shard needs { id, primary, replicas: [urls] }');
    }
  }
  const owners: string[] = new Array<string>(doc.slotCount!);
  let next = 0;
  for (const range of doc.ranges) {
    if (!Array.isArray(range) || range.length !== 3) throw malformed(`slot ranges are [firstSlot, lastSlot, shardId], not ${JSON.stringify(range)}`);
    const [first, last, id] = range as [unknown, unknown, unknown];
    if (first !== next || !Number.isInteger(last) || (last as number) < first || typeof id !== 'string') {
      throw new TopologyError(`The catalog's slot ranges must be ascending and cover every slot once; range ${JSON.stringify(range)} does not start at slot ${next}.`);
    }
    if ((last as number) >= doc.slotCount!) throw malformed(`range ${JSON.stringify(range)} ends beyond the last slot ${doc.slotCount! - 1}`);
    for (let slot = first; slot <= (last as number); slot++) owners[slot] = id;
    next = (last as number) + 1;
  }
  if (next !== doc.slotCount) throw new TopologyError(`The catalog's slot ranges end at slot ${next - 1}; the cluster has ${doc.slotCount} slots.`);
  if (doc.unshardedShardId !== undefined && typeof doc.unshardedShardId !== 'string') throw malformed(`unshardedShardId must be a shard id, not ${JSON.stringify(doc.unshardedShardId)}`);
  return createTopology({
    ...(doc.unshardedShardId === undefined ? {} : { unshardedShardId: doc.unshardedShardId }),
    version: doc.version,
    slotCount: doc.slotCount,
    shards: doc.shards.map((s) => ({ id: s.id, primary: s.primary, replicas: [...s.replicas] })),
    owners,
  });
}
