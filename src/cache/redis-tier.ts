import { createHash, randomInt } from 'node:crypto';
import { systemClock, type Clock } from '../kernel/clock';
import { ConfigError } from '../kernel/errors';
import { CacheBackendUnavailableError } from './cache-errors';
import { CircuitBreaker, type BreakerState, type CircuitBreakerOptions } from './circuit-breaker';
import { HashRing, type HashRingOptions } from '../kernel/hash-ring';

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
 * The L2 (Redis) tier. Keys are logical (`<policy>:<key>`); the tier adds its prefix and places a
 * key's value and version together (same server on the ring, same slot on a Cluster). Every method
 * rejects with `CacheBackendUnavailableError` when Redis cannot answer; callers decide what that means.
 */
export interface L2Tier {
  /** `single`, `cluster` or `ring`. */
  readonly kind: L2Kind;
  /** The stored payload, or `null`. */
  get(key: string): Promise<string | null>;
  /** Payloads of several keys, in order. */
  mget(keys: readonly string[]): Promise<(string | null)[]>;
  /** Reads the key's version before a load; pass the token to {@link L2Tier.fill}. */
  readVersion(key: string): Promise<VersionToken>;
  /** Stores `payload` only if the key's version is still the token's (atomic, Lua): a load that raced an invalidation is dropped. */
  fill(key: string, version: VersionToken, payload: string, ttlMillis: number): Promise<boolean>;
  /** Write-through: bumps the version (so racing fills fail) and stores `payload`, atomically. */
  write(key: string, payload: string, ttlMillis: number): Promise<void>;
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
  /** Closes clients this tier created (never the ones passed in). */
  close(): Promise<void>;
}

export type L2Kind = 'single' | 'cluster' | 'ring';

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

/** One Redis server (or a whole Cluster) with its breaker. */
interface L2Node {
  readonly id: string;
  readonly client: RedisLike;
  readonly breaker: CircuitBreaker;
  /** For the ring: false while the server is skipped (down, or rejoining after an outage). */
  usable: boolean;
}

// ---- Lua ----------------------------------------------------------------------------------------
// Versions and epochs start at a random base when created, so a Redis restart (which forgets them)
// can never bring back an old number that a stale entry or load still holds (no ABA).

// A version key never expires before its value key: its TTL is the larger of the version TTL and
// the value's (WRITE sets it so; FILL extends it when the value would outlive it).
const BUMP = `local function bump(k, base, ttl)
  if redis.call('EXISTS', k) == 0 then redis.call('SET', k, base) end
  local v = redis.call('INCR', k)
  if tonumber(ttl) > 0 then redis.call('PEXPIRE', k, ttl) end
  return v
end
`;

/** KEYS: value, version. ARGV: expected version ('' = none), payload, ttl. */
const FILL = `local v = redis.call('GET', KEYS[2]) or ''
if v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if v ~= '' then
  local t = redis.call('PTTL', KEYS[2])
  if t >= 0 and t < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
end
return 1`;

/** KEYS: value, version. ARGV: payload, ttl, base, version ttl. */
const WRITE = `${BUMP}
bump(KEYS[2], ARGV[3], math.max(tonumber(ARGV[4]), tonumber(ARGV[2])))
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

/** KEYS: value, version pairs. ARGV: base, version ttl. */
const INVALIDATE = `${BUMP}
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  bump(KEYS[i + 1], ARGV[1], ARGV[2])
end
return 1`;

/** KEYS: one epoch counter. ARGV: base. Returns the value, creating it when missing. */
const READ_EPOCH = `redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])`;

/** KEYS: one epoch counter. ARGV: base. */
const BUMP_EPOCH = `${BUMP}
return bump(KEYS[1], ARGV[1], '0')`;

const sha1 = (s: string): string => createHash('sha1').update(s).digest('hex');
const SCRIPTS = { FILL, WRITE, INVALIDATE, READ_EPOCH, BUMP_EPOCH } as const;
type ScriptName = keyof typeof SCRIPTS;
const SHAS: Record<ScriptName, string> = {
  FILL: sha1(FILL),
  WRITE: sha1(WRITE),
  INVALIDATE: sha1(INVALIDATE),
  READ_EPOCH: sha1(READ_EPOCH),
  BUMP_EPOCH: sha1(BUMP_EPOCH),
};

/** A random base below 2^50 so INCR stays an exact double for a very long time. */
const randomBase = (): string => String(randomInt(1, 2 ** 47) * 8);

/** How the tier finds servers; one implementation per backend. */
interface NodeRouter {
  readonly kind: L2Kind;
  readonly nodes: readonly L2Node[];
  /** Server that owns the routing key now, or undefined when none is usable. */
  owner(routingKey: string): L2Node | undefined;
  /** Servers an invalidation of the routing key must reach (the owner and, on a ring, its stand-in). */
  invalidationTargets(routingKey: string): L2Node[];
  /** Whether MGET may combine keys of one server (not on a Cluster, where keys span slots). */
  readonly batchesMget: boolean;
}

class RedisL2Tier implements L2Tier {
  readonly kind: L2Kind;
  private readonly prefix: string;
  private readonly versionTtl: string;
  private readonly recoverListeners = new Set<() => void>();

  constructor(
    private readonly router: NodeRouter,
    options: Required<Pick<L2CommonOptions, 'prefix' | 'versionTtlMillis'>>,
    private readonly owned: readonly RedisLike[],
  ) {
    this.kind = router.kind;
    this.prefix = options.prefix;
    this.versionTtl = String(options.versionTtlMillis);
  }

  // A key's value and version share the `{…}` hash tag: same slot on a Cluster, same ring server.
  private valueKey(key: string): string {
    return `${this.prefix}{${key}}`;
  }
  private versionKey(key: string): string {
    return `${this.prefix}{${key}}:ver`;
  }
  private epochKey(name: string): string {
    return `${this.prefix}epoch:{${name}}`;
  }

  notifyRecovered(): void {
    for (const l of this.recoverListeners) l();
  }

  onRecover(listener: () => void): () => void {
    this.recoverListeners.add(listener);
    return () => this.recoverListeners.delete(listener);
  }

  /** Runs `fn` on `node` through its breaker; any failure becomes CacheBackendUnavailableError. */
  private async on<T>(node: L2Node | undefined, fn: (c: RedisLike) => Promise<T>): Promise<T> {
    if (node === undefined) throw new CacheBackendUnavailableError('No Redis server of the ring is usable');
    if (!node.breaker.allow()) throw new CacheBackendUnavailableError(`Redis ${node.id} is unavailable (circuit open)`, { context: { server: node.id } });
    try {
      const r = await fn(node.client);
      node.breaker.success();
      return r;
    } catch (cause) {
      if (isScriptOrDataError(cause)) {
        node.breaker.success(); // the server answered
        throw cause;
      }
      node.breaker.failure();
      throw new CacheBackendUnavailableError(`Redis ${node.id} did not answer: ${(cause as Error)?.message ?? String(cause)}`, {
        cause,
        context: { server: node.id },
      });
    }
  }

  private async script(c: RedisLike, name: ScriptName, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await c.evalsha(SHAS[name], keys.length, ...keys, ...args);
    } catch (e) {
      if (!String((e as Error)?.message).includes('NOSCRIPT')) throw e;
      return c.eval(SCRIPTS[name], keys.length, ...keys, ...args);
    }
  }

  get(key: string): Promise<string | null> {
    return this.on(this.router.owner(key), (c) => c.get(this.valueKey(key)));
  }

  async mget(keys: readonly string[]): Promise<(string | null)[]> {
    const out: (string | null)[] = new Array(keys.length).fill(null);
    if (!this.router.batchesMget) {
      await Promise.all(keys.map(async (k, i) => (out[i] = await this.get(k))));
      return out;
    }
    const groups = new Map<L2Node | undefined, number[]>();
    keys.forEach((k, i) => {
      const n = this.router.owner(k);
      const g = groups.get(n);
      if (g === undefined) groups.set(n, [i]);
      else g.push(i);
    });
    await Promise.all(
      [...groups].map(async ([node, idx]) => {
        const vals = await this.on(node, (c) => c.mget(...idx.map((i) => this.valueKey(keys[i]!))));
        idx.forEach((i, j) => (out[i] = vals[j] ?? null));
      }),
    );
    return out;
  }

  async readVersion(key: string): Promise<VersionToken> {
    const node = this.router.owner(key);
    const v = await this.on(node, (c) => c.get(this.versionKey(key)));
    return { token: `${node!.id}\n${v ?? ''}` };
  }

  async fill(key: string, version: VersionToken, payload: string, ttlMillis: number): Promise<boolean> {
    const node = this.router.owner(key);
    const nl = version.token.indexOf('\n');
    // The owner changed since the version was read (ring failover or rejoin): the version there says nothing.
    if (node === undefined || version.token.slice(0, nl) !== node.id) return false;
    const r = await this.on(node, (c) =>
      this.script(c, 'FILL', [this.valueKey(key), this.versionKey(key)], [version.token.slice(nl + 1), payload, ttlMillis]),
    );
    return r === 1;
  }

  async write(key: string, payload: string, ttlMillis: number): Promise<void> {
    const owner = this.router.owner(key);
    const keys = [this.valueKey(key), this.versionKey(key)];
    await this.on(owner, (c) => this.script(c, 'WRITE', keys, [payload, ttlMillis, randomBase(), this.versionTtl]));
    // On a ring, the stand-in server may hold a copy from an earlier outage: drop it.
    const others = this.router.invalidationTargets(key).filter((n) => n !== owner);
    await Promise.all(others.map((n) => this.on(n, (c) => this.script(c, 'INVALIDATE', keys, [randomBase(), this.versionTtl]))));
  }

  async invalidate(keys: readonly string[]): Promise<void> {
    const groups = new Map<L2Node, string[]>();
    const singles: Promise<unknown>[] = [];
    for (const k of keys) {
      const targets = this.router.invalidationTargets(k);
      if (targets.length === 0) throw new CacheBackendUnavailableError('No Redis server is usable');
      const pair = [this.valueKey(k), this.versionKey(k)];
      for (const n of targets) {
        if (this.router.kind === 'cluster') {
          // A Cluster script may only touch keys of one slot: one script per key.
          singles.push(this.on(n, (c) => this.script(c, 'INVALIDATE', pair, [randomBase(), this.versionTtl])));
          continue;
        }
        const g = groups.get(n);
        if (g === undefined) groups.set(n, [...pair]);
        else g.push(...pair);
      }
    }
    await Promise.all([
      ...singles,
      ...[...groups].map(([n, ks]) => this.on(n, (c) => this.script(c, 'INVALIDATE', ks, [randomBase(), this.versionTtl]))),
    ]);
  }

  readEpochs(names: readonly string[]): Promise<number[]> {
    return Promise.all(
      names.map(async (name) => {
        const v = await this.on(this.router.owner(`epoch:${name}`), (c) => this.script(c, 'READ_EPOCH', [this.epochKey(name)], [randomBase()]));
        return Number(v);
      }),
    );
  }

  async bumpEpoch(name: string): Promise<number> {
    const v = await this.on(this.router.owner(`epoch:${name}`), (c) => this.script(c, 'BUMP_EPOCH', [this.epochKey(name)], [randomBase()]));
    return Number(v);
  }

  async clear(): Promise<void> {
    await Promise.all(this.router.nodes.map((n) => clearPrefix(n.client, this.prefix, this.kind === 'cluster')));
  }

  health(): Readonly<Record<string, BreakerState>> {
    const out: Record<string, BreakerState> = {};
    for (const n of this.router.nodes) out[n.id] = n.breaker.state;
    return Object.freeze(out);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.owned.map((c) => c.quit()));
  }
}

function isScriptOrDataError(e: unknown): boolean {
  // A Redis error reply (ReplyError) means the server is up: it is not a reason to open the breaker.
  return (e as Error)?.name === 'ReplyError' && !String((e as Error).message).startsWith('LOADING');
}

async function scanDelete(c: RedisLike, prefix: string): Promise<void> {
  let cursor = '0';
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  do {
    const [next, keys] = (await c.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 500)) as [string, string[]];
    cursor = next;
    // UNLINK one key at a time on a Cluster would be slow; keys of one SCAN page live on one node, but not one slot.
    for (let i = 0; i < keys.length; i += 100) {
      const batch = keys.slice(i, i + 100);
      if (batch.length > 0) await Promise.all(batch.map((k) => c.call('UNLINK', k)));
    }
  } while (cursor !== '0');
}

async function clearPrefix(c: RedisLike, prefix: string, cluster: boolean): Promise<void> {
  if (cluster) {
    const masters = (c as unknown as { nodes(role: 'master'): RedisLike[] }).nodes('master');
    await Promise.all(masters.map((m) => scanDelete(m, prefix)));
  } else {
    await scanDelete(c, prefix);
  }
}

function commonOptions(o: L2CommonOptions): { prefix: string; versionTtlMillis: number; clock: Clock; breaker: CircuitBreakerOptions } {
  const prefix = o.prefix ?? L2_DEFAULTS.prefix;
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) throw new ConfigError('prefix', 'must be a string without `{` or `}` (they are Redis Cluster hash tags)');
  const versionTtlMillis = o.versionTtlMillis ?? L2_DEFAULTS.versionTtlMillis;
  if (!Number.isSafeInteger(versionTtlMillis) || versionTtlMillis < 1000) throw new ConfigError('versionTtlMillis', `must be an integer ≥ 1000, got ${versionTtlMillis}`);
  return { prefix, versionTtlMillis, clock: o.clock ?? systemClock, breaker: { ...o.breaker } };
}

function checkClient(option: string, client: unknown): RedisLike {
  const c = client as RedisLike & { options?: { enableOfflineQueue?: boolean; commandTimeout?: unknown; redisOptions?: { commandTimeout?: unknown } } };
  if (c === null || typeof c !== 'object' || typeof c.get !== 'function' || typeof c.evalsha !== 'function') {
    throw new ConfigError(option, 'must be an ioredis Redis or Cluster client (or an object with the same methods)');
  }
  // An offline queue would hold commands while Redis is down and make reads hang instead of falling through.
  if (c.options?.enableOfflineQueue === true) throw new ConfigError(`${option}.options.enableOfflineQueue`, 'must be false for a cache client; see `redisClientDefaults`');
  // Without a per-command timeout, a Redis that stops answering (paused, network black hole) would
  // hang every read instead of letting it fall through to L1 and the loader.
  if (c.options !== undefined) {
    const cluster = c.options.redisOptions !== undefined || typeof (c as { nodes?: unknown }).nodes === 'function';
    const timeout = cluster ? c.options.redisOptions?.commandTimeout : c.options.commandTimeout;
    if (typeof timeout !== 'number' || !(timeout > 0)) {
      throw new ConfigError(`${option}.options.${cluster ? 'redisOptions.' : ''}commandTimeout`, 'must be a positive number of milliseconds for a cache client; see `redisClientDefaults`');
    }
  }
  return c;
}

/** Options of {@link singleRedisTier}. */
export interface SingleRedisTierOptions extends L2CommonOptions {
  /** The client (ioredis `Redis`, created with {@link redisClientDefaults}). Not closed by the tier. */
  client: RedisLike;
}

/** L2 on one Redis server. */
export function singleRedisTier(options: SingleRedisTierOptions): L2Tier {
  return oneEndpointTier('single', checkClient('client', options.client), options);
}

/** Options of {@link clusterRedisTier}. */
export interface ClusterRedisTierOptions extends L2CommonOptions {
  /** An ioredis `Cluster` (created with {@link redisClientDefaults} as `redisOptions`). Not closed by the tier. */
  cluster: RedisLike;
}

/** L2 on a Redis Cluster: ioredis routes each key to its slot's master. */
export function clusterRedisTier(options: ClusterRedisTierOptions): L2Tier {
  return oneEndpointTier('cluster', checkClient('cluster', options.cluster), options);
}

/**
 * A tier with one client and one breaker: a single server, or a Redis Cluster that ioredis routes
 * itself. MGET is batched only on a single server (a cluster's keys may span slots).
 */
function oneEndpointTier(kind: 'single' | 'cluster', client: RedisLike, options: L2CommonOptions): L2Tier {
  const o = commonOptions(options);
  let tier: RedisL2Tier;
  const node: L2Node = {
    id: kind === 'single' ? 'redis' : 'cluster',
    client,
    usable: true,
    breaker: new CircuitBreaker(o.clock, o.breaker, (s) => s === 'closed' && tier.notifyRecovered(), 'breaker'),
  };
  tier = new RedisL2Tier({ kind, nodes: [node], owner: () => node, invalidationTargets: () => [node], batchesMget: kind === 'single' }, o, []);
  return tier;
}

/** One standalone server of a ring. */
export interface RingServer {
  /** Stable id, hashed onto the ring (not the address, so a server can move). */
  id: string;
  /** Its client. Not closed by the tier. */
  client: RedisLike;
}

/** Options of {@link ringRedisTier}. */
export interface RingRedisTierOptions extends L2CommonOptions, HashRingOptions {
  /** The standalone servers, at least one. */
  servers: readonly RingServer[];
}

/**
 * L2 on a client-side consistent-hash ring of standalone servers (MurmurHash3, 150 virtual nodes
 * each). A server whose breaker opens is skipped: its keys go to the next server on the ring. When
 * it answers again, its keys under the prefix are deleted before it is used (it missed the
 * invalidations of the outage), and invalidations always reach both a key's owner and its stand-in.
 */
export function ringRedisTier(options: RingRedisTierOptions): L2Tier {
  const o = commonOptions(options);
  if (!Array.isArray(options.servers) || options.servers.length === 0) throw new ConfigError('servers', 'a ring needs at least one server');
  let tier: RedisL2Tier | undefined;
  const nodes: L2Node[] = options.servers.map((s, i) => {
    const client = checkClient(`servers[${i}].client`, s.client);
    const node: L2Node = {
      id: s.id,
      client,
      usable: true,
      breaker: new CircuitBreaker(o.clock, o.breaker, (state) => {
        if (state === 'open') node.usable = false;
      }, `servers[${i}].breaker`),
    };
    return node;
  });
  const ring = new HashRing(
    nodes.map((n) => n.id),
    options.virtualNodes === undefined ? {} : { virtualNodes: options.virtualNodes },
  );
  const rejoining = new Set<L2Node>();
  const rejoin = (n: L2Node): void => {
    // The breaker lets one probe through; it clears what the server may still hold from before.
    if (rejoining.has(n) || !n.breaker.allow()) return;
    rejoining.add(n);
    void scanDelete(n.client, o.prefix)
      .then(() => {
        n.breaker.success();
        n.usable = true;
        tier?.notifyRecovered();
      })
      .catch(() => n.breaker.failure())
      .finally(() => rejoining.delete(n));
  };
  const usable = (n: L2Node): boolean => {
    if (n.usable) return true;
    if (n.breaker.state === 'halfOpen') rejoin(n);
    return false;
  };
  const router: NodeRouter = {
    kind: 'ring',
    nodes,
    batchesMget: true,
    owner(key) {
      const first = nodes[ring.ownerIndex(key)]!;
      if (first.usable) return first;
      for (const m of ring.walk(key)) if (usable(nodes[m]!)) return nodes[m]!;
      return undefined;
    },
    invalidationTargets(key) {
      // The owner and the next usable server: whichever one serves the key, it no longer holds it.
      const out: L2Node[] = [];
      for (const m of ring.walk(key)) {
        if (usable(nodes[m]!)) out.push(nodes[m]!);
        if (out.length === 2) break;
      }
      return out;
    },
  };
  tier = new RedisL2Tier(router, o, []);
  return tier;
}

/**
 * ioredis options the cache needs: no offline queue (fail at once while disconnected), a
 * per-command timeout, no per-request retries, and reconnection with capped backoff. Spread them
 * into `new Redis({...redisClientDefaults, host, port})`.
 */
export const redisClientDefaults = Object.freeze({
  enableOfflineQueue: false,
  commandTimeout: 500,
  maxRetriesPerRequest: 0,
  connectTimeout: 2_000,
  retryStrategy: (times: number): number => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
});
