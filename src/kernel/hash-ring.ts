import { ConfigError } from './errors';
import { murmur3 } from './murmur3';

/** Options of {@link HashRing}. */
export interface HashRingOptions {
  /**
   * Points each server gets on the ring; more points spread keys more evenly.
   * @default 150
   */
  virtualNodes?: number;
}

/** Defaults of {@link HashRingOptions}. */
export const HASH_RING_DEFAULTS: Readonly<Required<HashRingOptions>> = Object.freeze({ virtualNodes: 150 });

/**
 * A consistent-hash ring: each member id is hashed (MurmurHash3 x86 32) at `virtualNodes` points
 * labelled `<id>#<i>` (`round(virtualNodes × weight)`, at least 1, when weights are given); a key
 * belongs to the first point at or after its hash, wrapping around. Adding or removing a member
 * only moves the keys of the arcs it gains or loses (about 1/N). Used by the cache's Redis ring
 * and by the balancer's consistent-hash strategy.
 */
export class HashRing {
  /** Sorted point hashes. */
  private readonly points: Uint32Array;
  /** Member index of each point. */
  private readonly owners: Uint16Array;
  readonly members: readonly string[];

  /**
   * @param members unique member ids.
   * @param weights relative weight of each member, in the order of `members` (each finite and
   *   > 0): member i gets `max(1, round(virtualNodes × weights[i]))` points. All 1 by default.
   */
  constructor(members: readonly string[], options: HashRingOptions = {}, weights?: readonly number[]) {
    const vnodes = options.virtualNodes ?? HASH_RING_DEFAULTS.virtualNodes;
    if (!Number.isSafeInteger(vnodes) || vnodes < 1 || vnodes > 10_000) throw new ConfigError('virtualNodes', `must be an integer in 1..10000, got ${vnodes}`);
    if (members.length === 0) throw new ConfigError('nodes', 'a ring needs at least one server');
    if (members.length > 65_535) throw new ConfigError('nodes', 'at most 65535 servers');
    if (new Set(members).size !== members.length) throw new ConfigError('nodes', 'server ids must be unique');
    if (weights !== undefined) {
      if (weights.length !== members.length) throw new ConfigError('weights', `must have one weight per member (${members.length}), got ${weights.length}`);
      for (const w of weights) if (!(Number.isFinite(w) && w > 0)) throw new ConfigError('weights', `must be finite numbers > 0, got ${w}`);
    }
    this.members = Object.freeze([...members]);
    const all: { h: number; m: number }[] = [];
    members.forEach((id, m) => {
      const points = weights === undefined ? vnodes : Math.max(1, Math.round(vnodes * weights[m]!));
      for (let i = 0; i < points; i++) all.push({ h: murmur3(`${id}#${i}`), m });
    });
    // Ties (rare) are broken by member id so every process builds the same ring.
    all.sort((a, b) => a.h - b.h || (members[a.m]! < members[b.m]! ? -1 : 1));
    this.points = Uint32Array.from(all, (p) => p.h);
    this.owners = Uint16Array.from(all, (p) => p.m);
  }

  /** Index of the first point at or after `hash` (wrapping to 0). */
  private firstPoint(hash: number): number {
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.points.length ? 0 : lo;
  }

  /** The owner of `key` (member index). */
  ownerIndex(key: string): number {
    return this.owners[this.firstPoint(murmur3(key))]!;
  }

  /** The owner id of `key`. */
  owner(key: string): string {
    return this.members[this.ownerIndex(key)]!;
  }

  /**
   * Distinct members in ring order starting at `key`'s owner: the owner, then the server that takes
   * over when it is unreachable, and so on. Stops after `limit` members.
   */
  walk(key: string, limit = this.members.length): number[] {
    return this.walkFromHash(murmur3(key), limit);
  }

  /**
   * Like {@link walk}, from a 32-bit hash instead of a key (a random point, or a hash computed
   * once for several rings).
   */
  walkFromHash(hash: number, limit = this.members.length): number[] {
    const out: number[] = [];
    const start = this.firstPoint(hash >>> 0);
    for (let i = 0; i < this.points.length && out.length < limit; i++) {
      const m = this.owners[(start + i) % this.points.length]!;
      if (!out.includes(m)) out.push(m);
    }
    return out;
  }
}
