/**
 * The one {@link L2Tier} implementation every Redis backend shares: key layout, the breaker around
 * each server, the scripts, MGET batching. Backends differ only in how a key finds its server
 * (a {@link NodeRouter}): one server, a Cluster that ioredis routes, or a client-side ring.
 */
import { systemClock, type Clock } from '../kernel/clock';
import { ConfigError } from '../kernel/errors';
import { requireInteger, requireKnownKeys, requireObject } from '../kernel/validate';
import { CacheBackendUnavailableError } from './cache-errors';
import { BreakerProbe } from './breaker-probe';
import type { BreakerState, CircuitBreaker, CircuitBreakerOptions } from './circuit-breaker';
import { L2_DEFAULTS, type L2CommonOptions, type L2Kind, type L2Tier, type L2WriteCondition, type RedisLike, type VersionToken } from './l2-tier';
import { closeRedisClients, type OwnedClient } from './redis-client';
import { randomBase, runScript } from './redis-scripts';

/**
 * One Redis server (or a whole Cluster) with its breaker.
 * @internal
 */
export interface L2Node {
  readonly id: string;
  readonly client: RedisLike;
  readonly breaker: CircuitBreaker;
  /** For the ring: false while the server is skipped (down, or rejoining after an outage). */
  usable: boolean;
  /** The first connection of a client the tier created, until it settled; commands wait for it. */
  connecting: Promise<void> | null;
  /** Probes the server in the background while its breaker is open. */
  readonly probe: BreakerProbe;
}

/**
 * A node for `client`; when the tier created it (`owned`), commands wait for its first connection.
 * `probe` checks the server while its breaker is open (a PING, unless given: a ring server's rejoin).
 * @internal
 */
export function l2Node(id: string, client: RedisLike, owned: OwnedClient | null, breaker: CircuitBreaker, clock: Clock, probe?: () => Promise<unknown>): L2Node {
  const node: L2Node = {
    id,
    client,
    breaker,
    usable: true,
    connecting: owned?.connecting ?? null,
    probe: new BreakerProbe(clock, breaker, breaker.probeIntervalMillis, probe ?? (() => client.call('PING'))),
  };
  void node.connecting?.then(() => (node.connecting = null));
  return node;
}

/**
 * How the tier finds servers; one implementation per backend.
 * @internal
 */
export interface NodeRouter {
  readonly kind: L2Kind;
  readonly nodes: readonly L2Node[];
  /** Server that owns the routing key now, or undefined when none is usable. */
  owner(routingKey: string): L2Node | undefined;
  /** Servers an invalidation of the routing key must reach (the owner and, on a ring, its stand-in). */
  invalidationTargets(routingKey: string): L2Node[];
  /** Whether MGET may combine keys of one server (not on a Cluster, where keys span slots). */
  readonly batchesMget: boolean;
}

/**
 * {@link L2CommonOptions} validated, with defaults applied.
 * @internal
 */
export interface ResolvedL2Options {
  readonly prefix: string;
  readonly versionTtlMillis: number;
  readonly clock: Clock;
  readonly breaker: CircuitBreakerOptions;
}

/** Option names every L2 backend takes. @internal */
export const L2_COMMON_KEYS: readonly (keyof L2CommonOptions)[] = ['prefix', 'versionTtlMillis', 'breaker', 'clock'];

/**
 * Validates the options of one backend: no key outside `common + own` (a typo fails here instead
 * of being ignored), and the common ones.
 * @internal
 */
export function resolveL2Options(o: L2CommonOptions, own: readonly string[]): ResolvedL2Options {
  requireKnownKeys('', requireObject('options', o), [...own, ...L2_COMMON_KEYS]);
  const prefix = o.prefix ?? L2_DEFAULTS.prefix;
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) throw new ConfigError('prefix', 'must be a string without `{` or `}` (they are Redis Cluster hash tags)');
  const versionTtlMillis = requireInteger('versionTtlMillis', o.versionTtlMillis ?? L2_DEFAULTS.versionTtlMillis, 1000);
  if (o.breaker !== undefined) requireObject('breaker', o.breaker);
  return { prefix, versionTtlMillis, clock: o.clock ?? systemClock, breaker: { ...o.breaker } };
}

/** @internal */
export class RedisL2Tier implements L2Tier {
  readonly kind: L2Kind;
  private readonly prefix: string;
  private readonly versionTtl: string;
  private readonly recoverListeners = new Set<() => void>();

  private readonly clientTimeoutMillis: number | undefined;

  /** @param owned clients the backend created itself; `close()` ends them (and only them). */
  constructor(
    private readonly router: NodeRouter,
    options: ResolvedL2Options,
    private readonly owned: readonly OwnedClient[],
  ) {
    this.kind = router.kind;
    this.prefix = options.prefix;
    this.versionTtl = String(options.versionTtlMillis);
    for (const n of router.nodes) {
      if (n.connecting === null) continue;
      this.connecting++;
      void n.connecting.then(() => this.connecting--);
    }
    const timeouts = router.nodes.map((n) => commandTimeoutOf(n.client));
    this.clientTimeoutMillis = timeouts.every((t) => t !== undefined) ? Math.max(...(timeouts as number[])) : undefined;
  }

  /** Nodes whose first connection is still being made (their commands wait for it). */
  private connecting = 0;

  /** The clients' command timeout, unless a first connection is still being made (commands wait for it). */
  get commandTimeoutMillis(): number | undefined {
    return this.connecting === 0 ? this.clientTimeoutMillis : undefined;
  }

  // A key's value and version share the `{…}` hash tag: same slot on a Cluster, same ring server.
  private valueKey(key: string): string {
    return `${this.prefix}{${key}}`;
  }
  private versionKey(key: string): string {
    return `${this.prefix}{${key}}:ver`;
  }
  private sourceVersionKey(key: string): string {
    return `${this.prefix}{${key}}:src`;
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
    if (node.connecting !== null) await node.connecting; // bounded by the client's connectTimeout
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
    const r = await this.on(node, (c) => runScript(c, 'FILL', [this.valueKey(key), this.versionKey(key)], [version.token.slice(nl + 1), payload, ttlMillis]));
    return r === 1;
  }

  async write(key: string, payload: string, ttlMillis: number, condition?: L2WriteCondition): Promise<boolean> {
    const owner = this.router.owner(key);
    const keys = [this.valueKey(key), this.versionKey(key)];
    const args: (string | number)[] = [payload, ttlMillis, randomBase(), this.versionTtl];
    let written: unknown;
    if (condition === undefined) {
      written = await this.on(owner, (c) => runScript(c, 'WRITE', keys, args));
    } else if ('version' in condition) {
      written = await this.on(owner, (c) => runScript(c, 'WRITE_VERSIONED', [...keys, this.sourceVersionKey(key)], [...args, condition.version]));
    } else {
      const nl = condition.ifVersion.token.indexOf('\n');
      // The owner changed since the version was read (ring failover or rejoin): the version there says nothing.
      if (owner === undefined || condition.ifVersion.token.slice(0, nl) !== owner.id) return false;
      written = await this.on(owner, (c) => runScript(c, 'WRITE_IF', keys, [...args, condition.ifVersion.token.slice(nl + 1)]));
    }
    if (written !== 1) return false;
    // On a ring, the stand-in server may hold a copy from an earlier outage: drop it.
    const others = this.router.invalidationTargets(key).filter((n) => n !== owner);
    await Promise.all(others.map((n) => this.on(n, (c) => runScript(c, 'INVALIDATE', keys, [randomBase(), this.versionTtl]))));
    return true;
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
          singles.push(this.on(n, (c) => runScript(c, 'INVALIDATE', pair, [randomBase(), this.versionTtl])));
          continue;
        }
        const g = groups.get(n);
        if (g === undefined) groups.set(n, [...pair]);
        else g.push(...pair);
      }
    }
    await Promise.all([...singles, ...[...groups].map(([n, ks]) => this.on(n, (c) => runScript(c, 'INVALIDATE', ks, [randomBase(), this.versionTtl])))]);
  }

  readEpochs(names: readonly string[]): Promise<number[]> {
    return Promise.all(
      names.map(async (name) => {
        const v = await this.on(this.router.owner(`epoch:${name}`), (c) => runScript(c, 'READ_EPOCH', [this.epochKey(name)], [randomBase()]));
        return Number(v);
      }),
    );
  }

  async bumpEpoch(name: string): Promise<number> {
    const v = await this.on(this.router.owner(`epoch:${name}`), (c) => runScript(c, 'BUMP_EPOCH', [this.epochKey(name)], [randomBase()]));
    return Number(v);
  }

  async clear(): Promise<void> {
    await Promise.all(
      this.router.nodes.map(async (n) => {
        if (n.connecting !== null) await n.connecting;
        await clearPrefix(n.client, this.prefix, this.kind === 'cluster');
      }),
    );
  }

  health(): Readonly<Record<string, BreakerState>> {
    const out: Record<string, BreakerState> = {};
    for (const n of this.router.nodes) out[n.id] = n.breaker.state;
    return Object.freeze(out);
  }

  async close(): Promise<void> {
    for (const n of this.router.nodes) n.probe.stop();
    await closeRedisClients(this.owned.map((o) => o.client));
  }
}

/** An ioredis client's (or Cluster's) per-command timeout, when it has one. */
function commandTimeoutOf(client: RedisLike): number | undefined {
  const o = (client as { options?: { commandTimeout?: unknown; redisOptions?: { commandTimeout?: unknown } } }).options;
  const t = o?.redisOptions?.commandTimeout ?? o?.commandTimeout;
  return typeof t === 'number' && t > 0 ? t : undefined;
}

function isScriptOrDataError(e: unknown): boolean {
  // A Redis error reply (ReplyError) means the server is up: it is not a reason to open the breaker.
  return (e as Error)?.name === 'ReplyError' && !String((e as Error).message).startsWith('LOADING');
}

/**
 * Deletes every key under `prefix` on one server (SCAN + UNLINK, never KEYS).
 * @internal
 */
export async function scanDelete(c: RedisLike, prefix: string): Promise<void> {
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
