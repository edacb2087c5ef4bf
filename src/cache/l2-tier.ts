/**
 * The L2 contract: what the tiered cache asks of its shared tier, and the options every Redis
 * backend (single server, ring, Cluster) shares. One contract test suite runs against each backend.
 */
import type { Clock } from '../kernel/clock';
import type { BreakerState, CircuitBreakerOptions } from './circuit-breaker';

/**
 * The few ioredis methods the L2 tier uses. An ioredis `Redis` or `Cluster` satisfies it; tests
 * wrap a real client in it to inject delays and failures.
 */
export interface RedisLike {
  get(key: string): Promise<string | null>;
  mget(...keys: string[]): Promise<(string | null)[]>;
  evalsha(sha: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  quit(): Promise<unknown>;
}

/** Whether a read found a value, and the version token needed to fill the key later. */
export interface VersionToken {
  /** Opaque: which server was read and the key's version there. */
  readonly token: string;
}

/**
 * How a write-through is ordered against other writers of the same key:
 * - `version`: the source's version of the value (decimal text of a non-negative integer); the
 *   write lands only if no greater version was written to the key (a later write of an older
 *   value is refused, whatever order the writes reach Redis in);
 * - `ifVersion`: the key's L2 version read before the source was written; the write lands only if
 *   nothing wrote or invalidated the key since.
 */
export type L2WriteCondition = { readonly version: string } | { readonly ifVersion: VersionToken };

/** `single`, `cluster` or `ring`. */
export type L2Kind = 'single' | 'cluster' | 'ring';

/**
 * The L2 (Redis) tier. Keys are logical (`<policy>:<key>`); the tier adds its prefix and places a
 * key's value and version together (same server on the ring, same slot on a Cluster). Every method
 * rejects with `CacheBackendUnavailableError` when Redis cannot answer; callers decide what that means.
 */
export interface L2Tier {
  /** `single`, `cluster` or `ring`. */
  readonly kind: L2Kind;
  /**
   * When known: every read method (`get`, `mget`, `readVersion`, `readEpochs`, `fill`) settles
   * within this many milliseconds by itself (one round of commands under the clients' command
   * timeout), so the cache need not race it against a call's deadline. `undefined` when unknown.
   */
  readonly commandTimeoutMillis?: number | undefined;
  /** The stored payload, or `null`. */
  get(key: string): Promise<string | null>;
  /** Payloads of several keys, in order. */
  mget(keys: readonly string[]): Promise<(string | null)[]>;
  /** Reads the key's version before a load; pass the token to {@link L2Tier.fill}. */
  readVersion(key: string): Promise<VersionToken>;
  /** Stores `payload` only if the key's version is still the token's (atomic, Lua): a load that raced an invalidation is dropped. */
  fill(key: string, version: VersionToken, payload: string, ttlMillis: number): Promise<boolean>;
  /**
   * Write-through: bumps the version (so racing fills fail) and stores `payload`, atomically; with
   * a `condition`, only when it holds. Resolves whether the value was stored.
   */
  write(key: string, payload: string, ttlMillis: number, condition?: L2WriteCondition): Promise<boolean>;
  /** Bumps the versions and deletes the values of `keys`. */
  invalidate(keys: readonly string[]): Promise<void>;
  /** Current values of named epoch counters (namespaces, tags), creating missing ones. */
  readEpochs(names: readonly string[]): Promise<number[]>;
  /** Bumps an epoch counter and returns its new value. */
  bumpEpoch(name: string): Promise<number>;
  /** Deletes every key under this tier's prefix on every server (tests, rejoin). */
  clear(): Promise<void>;
  /** Called when a server becomes usable again after being unavailable (to replay missed invalidations). */
  onRecover(listener: () => void): () => void;
  /** Breaker state per server id. */
  health(): Readonly<Record<string, BreakerState>>;
  /** Ends the clients this tier created from a `url` (or Cluster `nodes`); never the clients passed in. */
  close(): Promise<void>;
}

/** Options shared by every L2 backend. */
export interface L2CommonOptions {
  /**
   * Prefix of every Redis key this cache writes; instances that share data must use the same one.
   * @default 'ks:'
   */
  prefix?: string;
  /**
   * How long a key's version outlives its last invalidation, in milliseconds. Must exceed the
   * longest load (the hard loader timeout).
   * @default 86_400_000
   */
  versionTtlMillis?: number;
  /**
   * Circuit breaker per server: after `failureThreshold` consecutive failures the server is not
   * called for `openMillis`, then one probe is let through.
   * @default { failureThreshold: 3, openMillis: 1_000 }
   */
  breaker?: CircuitBreakerOptions;
  /**
   * Clock for the breakers' cooldowns.
   * @default systemClock
   */
  clock?: Clock;
}

/** Defaults of {@link L2CommonOptions}. */
export const L2_DEFAULTS = Object.freeze({ prefix: 'ks:', versionTtlMillis: 86_400_000 });
