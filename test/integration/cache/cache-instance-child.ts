/**
 * One cache instance in its own process (a service instance), driven by its parent over IPC. The
 * cache has its own Redis connections, L1 and bus subscription; with `pgUrl`, a PostgreSQL table
 * `kv (k text primary key, v text, version bigint)` is its source of truth.
 * argv[2]: the JSON of {@link ChildConfig}. Messages: `{ id, op, args }`; replies `{ id, result }` or `{ id, error }`.
 */
import Redis from 'ioredis';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { redisClientDefaults, redisSubscriberDefaults } from '../../../src/cache/redis-client';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { TieredCache } from '../../../src/cache/tiered-cache';
import type { CachePolicyOptions } from '../../../src/cache/cache-policy';
import { directPool } from '../../support/direct-pool';

export interface ChildConfig {
  readonly redisUrl: string;
  readonly prefix: string;
  readonly pgUrl?: string;
  readonly policy?: CachePolicyOptions;
  readonly busSilenceMillis?: number;
}

/** How a writer orders its write-through: a version from the row, its save, or neither. */
export type WriteMode = 'version' | 'save' | 'plain';

const config = JSON.parse(process.argv[2]!) as ChildConfig;
const send = (m: unknown): void => void process.send!(m);

async function main(): Promise<void> {
  // Not connected first: a child may start while Redis is down; the clients reconnect by themselves.
  const data = new Redis(config.redisUrl, redisClientDefaults);
  const sub = new Redis(config.redisUrl, redisSubscriberDefaults);
  data.on('error', () => {});
  sub.on('error', () => {});
  const bus = new InvalidationBus({ publisher: data, subscriber: sub, channel: `${config.prefix}bus` });
  await bus.start();
  const cache = new TieredCache({
    policies: { p: config.policy ?? { ttlMillis: 600_000 } },
    l2: singleRedisTier({ client: data, prefix: config.prefix }),
    bus,
    closeClients: [data, sub],
    ...(config.busSilenceMillis !== undefined ? { busSilenceMillis: config.busSilenceMillis } : {}),
  });
  const pool = config.pgUrl === undefined ? undefined : directPool({ connectionString: config.pgUrl, max: 4 });
  const load = async (key: string): Promise<string | null> => ((await pool!.query('select v from kv where k = $1', [key])).rows[0]?.v as string | undefined) ?? null;

  /** With `jitter`, a random number of event-loop turns between the database write and the cache's (a slow link): interleavings, not time. */
  const write = async (mode: WriteMode, key: string, value: string, jitter = 0): Promise<void> => {
    const update = 'update kv set v = $2, version = version + 1 where k = $1 returning version';
    const dawdle = async (): Promise<void> => {
      for (let i = Math.floor(Math.random() * (jitter + 1)); i > 0; i--) await new Promise((r) => setImmediate(r));
    };
    if (mode === 'save') {
      await cache.set('p', key, value, { save: async (v) => (await pool!.query(update, [key, v]), await dawdle()) });
    } else if (mode === 'version') {
      const { rows } = await pool!.query(update, [key, value]);
      await dawdle();
      await cache.set('p', key, value, { version: BigInt(rows[0].version as string) });
    } else {
      await pool!.query(update, [key, value]);
      await dawdle();
      await cache.set('p', key, value);
    }
  };

  // Invalidations of each key that arrived over the bus, so a parent can wait for one to be applied.
  const fromBus = new Map<string, number>();
  cache.events.on('invalidate', (e) => {
    if (e.source === 'bus') for (const k of e.keys ?? []) fromBus.set(k, (fromBus.get(k) ?? 0) + 1);
  });

  const ops: Record<string, (...args: any[]) => Promise<unknown> | unknown> = {
    busInvalidations: (key: string) => fromBus.get(key) ?? 0,
    get: (key: string) => cache.get('p', key),
    peek: (key: string) => cache.peek('p', key) ?? null,
    set: (key: string, value: unknown, version?: string) => cache.set('p', key, value, version === undefined ? {} : { version: BigInt(version) }),
    getOrLoad: (key: string) => cache.getOrLoad('p', key, () => load(key)),
    write,
    /** `count` writes of random keys, one at a time; values are `<tag>-<i>`. */
    writeLoop: async (mode: WriteMode, keys: string[], count: number, tag: string) => {
      for (let i = 0; i < count; i++) await write(mode, keys[Math.floor(Math.random() * keys.length)]!, `${tag}-${i}`);
      return count;
    },
    /** `count` cached reads of random keys, loading from PostgreSQL on a miss. */
    readLoop: async (keys: string[], count: number) => {
      for (let i = 0; i < count; i++) {
        const key = keys[Math.floor(Math.random() * keys.length)]!;
        await cache.getOrLoad('p', key, () => load(key));
      }
      return count;
    },
    stats: () => cache.stats(),
    close: async () => {
      await cache.close();
      await pool?.end();
    },
  };
  process.on('message', (m: { id: number; op: string; args: unknown[] }) => {
    Promise.resolve()
      .then(() => ops[m.op]!(...m.args))
      .then(
        (result) => send({ id: m.id, result: result === undefined ? null : result }),
        (error: unknown) => send({ id: m.id, error: String((error as Error)?.stack ?? error) }),
      );
  });
  send({ ready: true });
}

main().catch((error: unknown) => {
  send({ fatal: String((error as Error)?.stack ?? error) });
  process.exit(1);
});
