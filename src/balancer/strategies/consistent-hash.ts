import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { mathRandom, type RandomSource } from '../../kernel/clock';
import type { PickRequest, Strategy } from '../balancer-strategy';
import { requireInteger, requirePositive } from '../../kernel/validate';
import { murmur3 } from '../../kernel/murmur3';
import { ConfigError } from '../../kernel/errors';
import { HashRing } from '../../kernel/hash-ring';
import { requireOptions } from '../balancer-option-checks';

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
  readonly ring: HashRing;
}

const CONSISTENT_HASH_OPTIONS_KEYS: Readonly<Record<keyof ConsistentHashOptions, true>> = { virtualNodesPerWeight: true, loadFactor: true, random: true };

/**
 * Consistent hashing of a request key (client IP, user id) onto a MurmurHash3 ring with bounded
 * load. The same key keeps reaching the same instance (cache affinity) while instances come and go,
 * moving only about 1/n of keys, and a hot key cannot overload one instance.
 */
export function consistentHash(options: ConsistentHashOptions = {}): Strategy {
  requireOptions('', options, CONSISTENT_HASH_OPTIONS_KEYS);
  const vnodes = requireInteger(
    'virtualNodesPerWeight',
    options.virtualNodesPerWeight ?? CONSISTENT_HASH_DEFAULTS.virtualNodesPerWeight,
    1,
    10_000,
  );
  const loadFactor = options.loadFactor ?? CONSISTENT_HASH_DEFAULTS.loadFactor;
  if (loadFactor !== Infinity) requirePositive('loadFactor', loadFactor);
  if (loadFactor < 1) throw new ConfigError('loadFactor', `must be >= 1, got ${loadFactor}`);
  const random = options.random ?? mathRandom;
  let ring: Ring | undefined;

  // The ring is rebuilt only when the candidates (ids, weights, order) change, so member index i
  // is candidates[i].
  const build = (candidates: NonEmptyArray<BalancedInstance>): HashRing => {
    const signature = candidates.map((c) => `${c.id}\u0000${c.weight}`).join('\u0001');
    if (ring?.signature !== signature) {
      ring = {
        signature,
        ring: new HashRing(
          candidates.map((c) => c.id),
          { virtualNodes: vnodes },
          candidates.map((c) => c.weight),
        ),
      };
    }
    return ring.ring;
  };

  return {
    name: 'consistent-hash',
    pick(candidates: NonEmptyArray<BalancedInstance>, request: PickRequest): BalancedInstance {
      const r = build(candidates);
      const hash = request.key === undefined ? Math.floor(random() * 0x100000000) : murmur3(request.key);
      let totalInflight = 0;
      let totalWeight = 0;
      for (const c of candidates) {
        totalInflight += c.inflight;
        totalWeight += c.weight;
      }
      // Each instance's bound is its weighted share; the bounds add up to more than the calls in
      // flight, so some instance is always under its bound.
      const underBound = (c: BalancedInstance): boolean =>
        c.inflight < Math.ceil((loadFactor * (totalInflight + 1) * c.weight) / totalWeight);
      // The owner almost always takes the call: walk the ring further only when it is at its bound.
      const owner = candidates[r.walkFromHash(hash, 1)[0]!]!;
      if (underBound(owner)) return owner;
      for (const m of r.walkFromHash(hash)) {
        const c = candidates[m]!;
        if (underBound(c)) return c;
      }
      // Unreachable (the bounds sum to more than the calls in flight); kept as a safe answer.
      return owner;
    },
  };
}
