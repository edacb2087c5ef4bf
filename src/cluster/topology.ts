import { TopologyError } from './cluster-errors';
import { redactUrl } from '../kernel/redact';
import { DEFAULT_SLOT_COUNT, slotOf } from './slot-hash';
import { databaseAddress } from './server-address';

/** A PostgreSQL server of the topology. Its URL may hold a password, so it is kept non-enumerable. */
export interface ServerSpec {
  /** Connection URL (`postgres://user:password@host:port/db`). Non-enumerable: never printed by `console.log` or JSON. */
  readonly url: string;
  /** The URL with its password replaced by `***`, safe for logs. */
  readonly redactedUrl: string;
}

/** One shard: a primary for writes and transactions, and optional streaming replicas for reads. */
export interface Shard {
  /** Stable id (`shard0`, `eu-1`, …): letters, digits, `_` and `-`. */
  readonly id: string;
  /** Position in the topology's shard list. */
  readonly index: number;
  readonly primary: ServerSpec;
  readonly replicas: readonly ServerSpec[];
}

/** Input of {@link createTopology}: a shard as the user describes it. */
export interface ShardInput {
  id: string;
  /** Connection URL of the primary. */
  primary: string;
  /** Connection URLs of streaming replicas of this shard's primary. @default [] */
  replicas?: readonly string[];
}

/** Input of {@link createTopology}. */
export interface TopologyInput {
  /** Shards in order; default ownership (contract 4) depends on this order. Non-empty. */
  shards: readonly ShardInput[];
  /** Slots in the cluster; fixed for the life of a cluster. @default 4096 */
  slotCount?: number;
  /**
   * Slot ownership: `owners[slot]` is the owning shard id. When omitted, slot `s` belongs to shard
   * `floor(s * N / slotCount)` (contract 4). After creation ownership changes only by moving slots.
   */
  owners?: readonly string[];
  /** Monotonic version; a running dialect only accepts a newer one. @default 1 */
  version?: number;
  /**
   * The shard holding the unsharded tables, when the topology records it (the catalog does once a
   * drain moved them). Routers follow it over their `unshardedShardId` option. @default undefined
   */
  unshardedShardId?: string;
}

/**
 * An immutable, versioned map of the cluster: shards, their servers and who owns each slot.
 * Share it freely; derive changed copies with {@link Topology.withSlotsMoved}.
 */
export interface Topology {
  readonly version: number;
  readonly slotCount: number;
  readonly shards: readonly Shard[];
  /** The shard holding the unsharded tables, when recorded (else routers use their `unshardedShardId` option, default the first shard). */
  readonly unshardedShardId: string | undefined;
  /** The shard with `id`, or `undefined`. */
  shardById(id: string): Shard | undefined;
  /** The shard owning `slot`. */
  shardForSlot(slot: number): Shard;
  /** The shard owning the slot of `key` (key encoding contract applies; bad keys throw). */
  shardForKey(key: unknown): Shard;
  /** The slots `shardId` owns, ascending. */
  slotsOf(shardId: string): number[];
  /** Owner shard id of every slot, as a plain array (for catalogs and other languages). */
  ownerIds(): string[];
  /** A new topology (version + 1 unless given) in which `slots` belong to `toShardId`. */
  withSlotsMoved(slots: readonly number[], toShardId: string, version?: number): Topology;
  /** A new topology (version + 1 unless given) with `shard` appended; it owns no slot until slots move to it. */
  withShardAdded(shard: ShardInput, version?: number): Topology;
  /** A new topology (version + 1 unless given) recording `shardId` as the holder of the unsharded tables. */
  withUnshardedShard(shardId: string, version?: number): Topology;
}

const SHARD_ID = /^[A-Za-z0-9_-]{1,63}$/;
const MAX_SLOT_COUNT = 65536;

/**
 * Builds and validates a topology. Errors ({@link TopologyError}, code `E_INVALID_TOPOLOGY`) say what
 * to fix: empty shard list, duplicate or malformed ids, malformed URLs, two servers naming the same
 * database (same host, port and database, whatever the user or parameters), a bad slot count,
 * unowned slots or owners that are not shards.
 */
export function createTopology(input: TopologyInput): Topology {
  if (input === null || typeof input !== 'object') throw new TopologyError('Topology input must be an object with a `shards` list.');
  const slotCount = input.slotCount ?? DEFAULT_SLOT_COUNT;
  if (!Number.isInteger(slotCount) || slotCount < 1 || slotCount > MAX_SLOT_COUNT) {
    throw new TopologyError(`slotCount must be an integer from 1 to ${MAX_SLOT_COUNT}; got ${String(slotCount)}.`, { slotCount });
  }
  const version = input.version ?? 1;
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new TopologyError(`version must be a positive integer; got ${String(version)}.`, { version });
  }
  if (!Array.isArray(input.shards) || input.shards.length === 0) {
    throw new TopologyError('A topology needs at least one shard in `shards`.');
  }
  const shards = input.shards.map((s, index) => buildShard(s, index));
  const byId = new Map<string, Shard>();
  for (const shard of shards) {
    if (byId.has(shard.id)) throw new TopologyError(`Duplicate shard id "${shard.id}": every shard needs its own id.`, { shardId: shard.id });
    byId.set(shard.id, shard);
  }
  refuseSharedDatabases(shards);
  const owners = buildOwners(input.owners, slotCount, shards, byId);
  const holder = input.unshardedShardId;
  if (holder !== undefined && (typeof holder !== 'string' || !byId.has(holder))) {
    throw new TopologyError(`unshardedShardId must name a shard of the topology; got ${JSON.stringify(holder)}.`, { unshardedShardId: holder });
  }
  return freezeTopology(version, slotCount, shards, byId, owners, holder);
}

function buildShard(input: ShardInput, index: number): Shard {
  if (input === null || typeof input !== 'object') throw new TopologyError(`shards[${index}] must be an object with \`id\` and \`primary\`.`);
  if (typeof input.id !== 'string' || !SHARD_ID.test(input.id)) {
    throw new TopologyError(
      `shards[${index}].id must be 1–63 letters, digits, "_" or "-"; got ${JSON.stringify(input.id)}.`,
      { index },
    );
  }
  const replicas = input.replicas ?? [];
  if (!Array.isArray(replicas)) throw new TopologyError(`shards[${index}].replicas must be a list of URLs.`, { shardId: input.id });
  return Object.freeze({
    id: input.id,
    index,
    primary: serverSpec(input.primary, `shards[${index}].primary`),
    replicas: Object.freeze(replicas.map((url, r) => serverSpec(url, `shards[${index}].replicas[${r}]`))),
  });
}

/**
 * Two shards on one database would each count its rows in every scatter (a doubled count, silently),
 * and a replica naming its own shard's primary, or another shard's server, is not a replica of it.
 */
function refuseSharedDatabases(shards: readonly Shard[]): void {
  const seen = new Map<string, { where: string; url: string }>();
  for (const shard of shards) {
    const servers = [
      { where: `shard "${shard.id}" primary`, url: shard.primary.url, redacted: shard.primary.redactedUrl },
      ...shard.replicas.map((r, i) => ({ where: `shard "${shard.id}" replica ${i}`, url: r.url, redacted: r.redactedUrl })),
    ];
    for (const server of servers) {
      const address = databaseAddress(server.url);
      const first = seen.get(address);
      if (first !== undefined) {
        throw new TopologyError(
          `${first.where} (${redactUrl(first.url)}) and ${server.where} (${server.redacted}) are the same database ` +
            `(${address}): every shard needs a database of its own, and a replica must be another server; ` +
            `list each database once.`,
          { first: first.where, second: server.where, address },
        );
      }
      seen.set(address, { where: server.where, url: server.url });
    }
  }
}

function serverSpec(url: unknown, where: string): ServerSpec {
  if (typeof url !== 'string') throw new TopologyError(`${where} must be a connection URL string like postgres://user@host:5432/db.`, { where });
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TopologyError(`${where} is not a valid URL (${redactUrl(url)}): use postgres://user:password@host:port/database.`, { where });
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new TopologyError(`${where} must use the postgres:// or postgresql:// scheme; got "${parsed.protocol}".`, { where });
  }
  if (parsed.hostname === '') throw new TopologyError(`${where} has no host: use postgres://user@host:port/database.`, { where });
  const spec = { redactedUrl: redactUrl(url) } as ServerSpec;
  Object.defineProperty(spec, 'url', { value: url, enumerable: false });
  return Object.freeze(spec);
}

function buildOwners(
  owners: readonly string[] | undefined,
  slotCount: number,
  shards: readonly Shard[],
  byId: ReadonlyMap<string, Shard>,
): Uint16Array {
  const result = new Uint16Array(slotCount);
  if (owners === undefined) {
    // Contract 4: contiguous ranges in shard order.
    for (let s = 0; s < slotCount; s++) result[s] = Math.floor((s * shards.length) / slotCount);
    return result;
  }
  if (!Array.isArray(owners) || owners.length !== slotCount) {
    throw new TopologyError(`owners must list the owning shard id of every one of the ${slotCount} slots; got ${Array.isArray(owners) ? owners.length : typeof owners} entries.`);
  }
  for (let s = 0; s < slotCount; s++) {
    const id = owners[s];
    const shard = id === undefined ? undefined : byId.get(id);
    if (shard === undefined) {
      throw new TopologyError(
        id === undefined || id === null
          ? `Slot ${s} is unowned: every slot needs an owning shard.`
          : `Slot ${s} is owned by "${id}", which is not a shard of this topology.`,
        { slot: s },
      );
    }
    result[s] = shard.index;
  }
  return result;
}

function freezeTopology(
  version: number,
  slotCount: number,
  shards: readonly Shard[],
  byId: ReadonlyMap<string, Shard>,
  owners: Uint16Array,
  holder: string | undefined,
): Topology {
  const frozenShards = Object.freeze([...shards]);
  const shardForSlot = (slot: number): Shard => {
    const shard = frozenShards[owners[slot] ?? -1];
    if (shard === undefined) throw new TopologyError(`Slot ${slot} is outside 0..${slotCount - 1}.`, { slot });
    return shard;
  };
  const ownerIds = (): string[] => Array.from(owners, (i) => frozenShards[i]!.id);
  const inputs = (): ShardInput[] =>
    frozenShards.map((s) => ({ id: s.id, primary: s.primary.url, replicas: s.replicas.map((r) => r.url) }));
  const kept = holder === undefined ? {} : { unshardedShardId: holder };
  const topology: Topology = {
    version,
    slotCount,
    shards: frozenShards,
    unshardedShardId: holder,
    shardById: (id) => byId.get(id),
    shardForSlot,
    shardForKey: (key) => shardForSlot(slotOf(key, slotCount)),
    slotsOf(shardId) {
      const shard = byId.get(shardId);
      if (shard === undefined) return [];
      const slots: number[] = [];
      for (let s = 0; s < slotCount; s++) if (owners[s] === shard.index) slots.push(s);
      return slots;
    },
    ownerIds,
    withSlotsMoved(slots, toShardId, nextVersion = version + 1) {
      if (!byId.has(toShardId)) throw new TopologyError(`Cannot move slots to "${toShardId}": no such shard.`, { shardId: toShardId });
      const next = ownerIds();
      for (const slot of slots) {
        if (!Number.isInteger(slot) || slot < 0 || slot >= slotCount) {
          throw new TopologyError(`Slot ${slot} is outside 0..${slotCount - 1}.`, { slot });
        }
        next[slot] = toShardId;
      }
      return createTopology({ shards: inputs(), slotCount, owners: next, version: nextVersion, ...kept });
    },
    withShardAdded(shard, nextVersion = version + 1) {
      return createTopology({ shards: [...inputs(), shard], slotCount, owners: ownerIds(), version: nextVersion, ...kept });
    },
    withUnshardedShard(shardId, nextVersion = version + 1) {
      return createTopology({ shards: inputs(), slotCount, owners: ownerIds(), version: nextVersion, unshardedShardId: shardId });
    },
  };
  return Object.freeze(topology);
}
