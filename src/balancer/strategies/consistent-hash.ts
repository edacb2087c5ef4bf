import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { mathRandom, type RandomSource } from '../../kernel/clock';
import type { PickRequest, Strategy } from '../balancer-strategy';
import { requireInteger, requirePositive } from '../../kernel/validate';
import { murmur3 } from '../../kernel/murmur3';
import { ConfigError } from '../../kernel/errors';

/** Options of {@link consistentHash}. */
export interface ConsistentHashOptions {
  /**
   * Points on the ring per unit of weight (the original design's 150 virtual nodes).
   * @default 150
   */
  readonly virtualNodesPerWeight?: number;
  /**
   * Bounded load factor c ≥ 1: no instance takes more than `ceil(c × (total in flight + 1) × w / W)`
   * calls at once (w its weight, W the candidates' total; `ceil(c × (total + 1) / n)` with equal
   * weights); further keys spill to the next instance on the ring ("consistent hashing with
   * bounded loads", as in HAProxy's `hash-balance-factor`). `Infinity` disables the bound.
   * @default 1.25
   */
  readonly loadFactor?: number;
  /**
   * Used to place calls that carry no `key`.
   * @default Math.random
   */
  readonly random?: RandomSource;
}

/** Defaults of {@link ConsistentHashOptions}. */
export const CONSISTENT_HASH_DEFAULTS = Object.freeze({ virtualNodesPerWeight: 150, loadFactor: 1.25 });

interface Ring {
  readonly signature: string;
  readonly points: Uint32Array;
  readonly owners: readonly string[];
}

/**
 * Consistent hashing of a request key (client IP, user id) onto a MurmurHash3 ring with bounded
 * load. The same key keeps reaching the same instance (cache affinity) while instances come and go,
 * moving only about 1/n of keys, and a hot key cannot overload one instance.
 */
export function consistentHash(options: ConsistentHashOptions = {}): Strategy {
  const vnodes = requireInteger(
    'virtualNodesPerWeight',
    options.virtualNodesPerWeight ?? CONSISTENT_HASH_DEFAULTS.virtualNodesPerWeight,
    1,
  );
  const loadFactor = options.loadFactor ?? CONSISTENT_HASH_DEFAULTS.loadFactor;
  if (loadFactor !== Infinity) requirePositive('loadFactor', loadFactor);
  if (loadFactor < 1) throw new ConfigError('loadFactor', `must be >= 1, got ${loadFactor}`);
  const random = options.random ?? mathRandom;
  let ring: Ring | undefined;

  const build = (candidates: NonEmptyArray<BalancedInstance>): Ring => {
    const signature = candidates.map((c) => `${c.id}\u0000${c.weight}`).join('\u0001');
    if (ring?.signature === signature) return ring;
    const entries: Array<[number, string]> = [];
    for (const c of candidates) {
      const count = Math.max(1, Math.round(vnodes * c.weight));
      for (let v = 0; v < count; v++) entries.push([murmur3(`${c.id}#${v}`), c.id]);
    }
    entries.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : 1));
    ring = {
      signature,
      points: Uint32Array.from(entries, (e) => e[0]),
      owners: entries.map((e) => e[1]),
    };
    return ring;
  };

  return {
    name: 'consistent-hash',
    pick(candidates: NonEmptyArray<BalancedInstance>, request: PickRequest): BalancedInstance {
      const r = build(candidates);
      const byId = new Map(candidates.map((c) => [c.id, c]));
      const hash = request.key === undefined ? Math.floor(random() * 0x100000000) : murmur3(request.key);
      let totalInflight = 0;
      let totalWeight = 0;
      for (const c of candidates) {
        totalInflight += c.inflight;
        totalWeight += c.weight;
      }
      // Each instance's bound is its weighted share; the bounds add up to more than the calls in
      // flight, so some instance is always under its bound.
      const boundOf = (c: BalancedInstance): number => Math.ceil((loadFactor * (totalInflight + 1) * c.weight) / totalWeight);
      // First ring point at or after the hash (binary search), then walk clockwise.
      let lo = 0;
      let hi = r.points.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((r.points[mid] as number) < hash) lo = mid + 1;
        else hi = mid;
      }
      const seen = new Set<string>();
      for (let i = 0; i < r.points.length && seen.size < candidates.length; i++) {
        const id = r.owners[(lo + i) % r.points.length] as string;
        if (seen.has(id)) continue;
        seen.add(id);
        const c = byId.get(id) as BalancedInstance;
        if (c.inflight < boundOf(c)) return c;
      }
      // Unreachable (the bounds sum to more than the calls in flight); kept as a safe answer.
      return byId.get(r.owners[lo % r.points.length] as string) ?? candidates[0];
    },
  };
}
