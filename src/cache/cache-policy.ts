import { ConfigError } from '../kernel/errors';
import { requireBoolean, requireInteger, requireKnownKeys, requireObject } from '../kernel/validate';

/** A tier a policy may use: `l1` (in-process memory) or `l2` (Redis). */
export type CacheLevel = 'l1' | 'l2';

/** How one class of data is cached. Every instance sharing a Redis must use the same policies. */
export interface CachePolicyOptions {
  /**
   * How long an entry is fresh, in milliseconds (both tiers).
   * @default 300_000
   */
  ttlMillis?: number;
  /**
   * After `ttlMillis`, how long a stale entry may still be served while one background load
   * refreshes it (stale-while-revalidate), or when the loader fails or times out (fail-safe).
   * 0 disables serving stale values.
   * @default 0
   */
  graceMillis?: number;
  /**
   * Most entries this policy keeps in L1 (the original design's `max_size`).
   * @default 10_000
   */
  maxEntries?: number;
  /**
   * Most bytes this policy keeps in L1: keys and serialized values together.
   * @default 67_108_864 (64 MiB)
   */
  maxBytes?: number;
  /**
   * Tiers used, a non-empty subset of `['l1', 'l2']`.
   * @default ['l1', 'l2']
   */
  levels?: readonly CacheLevel[];
  /**
   * On `set`, write the new value to the tiers after the source of truth (write-through). When
   * false, `set` saves to the source of truth and then invalidates the key (invalidate-on-write).
   * @default true
   */
  writeThrough?: boolean;
  /**
   * On a read miss, store what the loader returned (cache-aside / lazy loading). When false, only
   * `set` and `warmUp` put values in the cache; `getOrLoad` still calls the loader on a miss.
   * @default true
   */
  cacheAside?: boolean;
  /**
   * When a stale value is available (within grace) and the loader takes longer than this, the
   * stale value is returned and the load continues in the background. 0 disables.
   * @default 0
   */
  softTimeoutMillis?: number;
  /**
   * A loader slower than this fails the read with `CacheLoaderTimeoutError` (or serves a stale
   * value within grace); the load may still fill the cache when it completes. 0 disables.
   * @default 30_000
   */
  hardTimeoutMillis?: number;
}

/** A validated, frozen policy. */
export interface CachePolicy {
  readonly name: string;
  readonly ttlMillis: number;
  readonly graceMillis: number;
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly levels: readonly CacheLevel[];
  readonly writeThrough: boolean;
  readonly cacheAside: boolean;
  readonly softTimeoutMillis: number;
  readonly hardTimeoutMillis: number;
  /** Derived: `levels` includes `l1`. */
  readonly useL1: boolean;
  /** Derived: `levels` includes `l2`. */
  readonly useL2: boolean;
}

/** Defaults of {@link CachePolicyOptions}. */
export const CACHE_POLICY_DEFAULTS: Readonly<Required<CachePolicyOptions>> = Object.freeze({
  ttlMillis: 300_000,
  graceMillis: 0,
  maxEntries: 10_000,
  maxBytes: 67_108_864,
  levels: Object.freeze(['l1', 'l2'] as const),
  writeThrough: true,
  cacheAside: true,
  softTimeoutMillis: 0,
  hardTimeoutMillis: 30_000,
});

/**
 * The four data classes of the original scalability design, with its TTLs, sizes, levels and
 * write modes, ready to pass as `policies` (or to spread and adjust).
 */
export const EXAMPLE_POLICIES: Readonly<Record<'user_data' | 'fund_data' | 'analysis_results' | 'user_preferences', Readonly<CachePolicyOptions>>> =
  Object.freeze({
    user_data: frozen({ ttlMillis: 3_600_000, maxEntries: 10_000, levels: ['l1', 'l2'], writeThrough: true, cacheAside: false }),
    fund_data: frozen({ ttlMillis: 1_800_000, maxEntries: 50_000, levels: ['l1', 'l2'], writeThrough: true, cacheAside: true }),
    analysis_results: frozen({ ttlMillis: 7_200_000, maxEntries: 5_000, levels: ['l2'], writeThrough: false, cacheAside: true }),
    user_preferences: frozen({ ttlMillis: 86_400_000, maxEntries: 100_000, levels: ['l1', 'l2'], writeThrough: true, cacheAside: false }),
  });

function frozen(o: CachePolicyOptions): Readonly<CachePolicyOptions> {
  return Object.freeze({ ...o, ...(o.levels ? { levels: Object.freeze([...o.levels]) } : {}) });
}

const POLICY_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const KNOWN_KEYS = Object.keys(CACHE_POLICY_DEFAULTS);
const int = (option: string, value: unknown, min: number): number => requireInteger(option, value as number, min);

/**
 * Validates one policy; errors name the option as `policies.<name>.<option>`. Never keeps `options`.
 * @internal
 */
export function resolvePolicy(name: string, options: CachePolicyOptions = {}): CachePolicy {
  if (!POLICY_NAME.test(name)) {
    throw new ConfigError(`policies.${name}`, 'policy names are 1–64 characters of letters, digits, `_`, `.` or `-`');
  }
  const at = (o: string): string => `policies.${name}.${o}`;
  requireKnownKeys(`policies.${name}`, requireObject(`policies.${name}`, options), KNOWN_KEYS);
  const o = { ...CACHE_POLICY_DEFAULTS, ...stripUndefined(options) };
  const levelsIn: unknown = o.levels;
  if (!Array.isArray(levelsIn) || levelsIn.length === 0) throw new ConfigError(at('levels'), "must be a non-empty array of 'l1' and/or 'l2'");
  const levels: CacheLevel[] = [];
  for (const l of levelsIn) {
    if (l !== 'l1' && l !== 'l2') throw new ConfigError(at('levels'), `unknown level ${JSON.stringify(l)}; use 'l1' and/or 'l2'`);
    if (!levels.includes(l)) levels.push(l);
  }
  const policy: CachePolicy = {
    name,
    ttlMillis: int(at('ttlMillis'), o.ttlMillis, 1),
    graceMillis: int(at('graceMillis'), o.graceMillis, 0),
    maxEntries: int(at('maxEntries'), o.maxEntries, 1),
    maxBytes: int(at('maxBytes'), o.maxBytes, 1),
    levels: Object.freeze(levels),
    writeThrough: requireBoolean(at('writeThrough'), o.writeThrough),
    cacheAside: requireBoolean(at('cacheAside'), o.cacheAside),
    softTimeoutMillis: int(at('softTimeoutMillis'), o.softTimeoutMillis, 0),
    hardTimeoutMillis: int(at('hardTimeoutMillis'), o.hardTimeoutMillis, 0),
    useL1: levels.includes('l1'),
    useL2: levels.includes('l2'),
  };
  if (policy.hardTimeoutMillis !== 0 && policy.softTimeoutMillis > policy.hardTimeoutMillis) {
    throw new ConfigError(at('softTimeoutMillis'), `must not exceed hardTimeoutMillis (${policy.hardTimeoutMillis})`);
  }
  return Object.freeze(policy);
}

/**
 * Validates a map of named policies.
 * @internal
 */
export function resolvePolicies(policies: Readonly<Record<string, CachePolicyOptions>>): ReadonlyMap<string, CachePolicy> {
  if (typeof policies !== 'object' || policies === null) throw new ConfigError('policies', 'must be an object of named policies');
  const names = Object.keys(policies);
  if (names.length === 0) throw new ConfigError('policies', 'configure at least one policy');
  const out = new Map<string, CachePolicy>();
  for (const name of names) out.set(name, resolvePolicy(name, policies[name]));
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
