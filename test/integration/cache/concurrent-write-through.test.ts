import Redis from 'ioredis';
import { Pool } from 'pg';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { decodeEntry } from '../../../src/cache/cache-entry';
import { createSerializer } from '../../../src/cache/serializer';
import type { CacheStats } from '../../../src/cache/cache-stats';
import type { WriteMode } from './cache-instance-child';
import { startChild, type ChildInstance } from './cache-fixtures';
import { directPool } from '../../support/direct-pool';

/**
 * Concurrent write-through of the same keys by two instances, each in its own process, with a
 * third process reading (and filling) all the while; PostgreSQL is the source of truth. After
 * quiescence, L2 and every instance's L1 must agree with PostgreSQL on every key.
 */
let cluster: TestCluster;
let pgUrl: string;
let pool: Pool;
let raw: Redis;
const KEYS = Array.from({ length: 100 }, (_, i) => `k${i}`);

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, redis: { standalone: 1 } });
  pgUrl = (await cluster.createDatabase('write_through'))[0]!.primaryUrl;
  pool = directPool({ connectionString: pgUrl });
  await pool.query('create table kv (k text primary key, v text not null, version bigint not null)');
  raw = new Redis(cluster.redis[0]!.url);
}, 60_000);
afterAll(async () => {
  raw?.disconnect();
  await pool?.end();
  await cluster?.stop();
});

/** Waits (on the instances' own counters) until every bus message published has been received by every other instance. */
async function busQuiet(all: ChildInstance[]): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    const stats = await Promise.all(all.map((c) => c.call<CacheStats>('stats')));
    const published = stats.map((s) => s.bus.published);
    const total = published.reduce((a, b) => a + b, 0);
    if (stats.every((s, i) => s.bus.received === total - published[i]!)) return;
    if (Date.now() > until) throw new Error(`bus not quiet: ${JSON.stringify(stats.map((s) => s.bus))}`);
    await new Promise((r) => setImmediate(r));
  }
}

test.each<[WriteMode, string]>([
  ['version', 'ordered by the version the row gives'],
  ['save', 'ordered by the L2 version read before the save'],
  ['plain', 'neither: falls back to invalidation'],
])('two writers (%s: %s) and a reader in three processes: after quiescence, no key disagrees with PostgreSQL in L2 or any L1', async (mode) => {
  await pool.query('truncate kv');
  await pool.query(`insert into kv select 'k' || i, 'initial', 0 from generate_series(0, ${KEYS.length - 1}) i`);
  const prefix = `cwt-${mode}:`;
  const config = { redisUrl: cluster.redis[0]!.url, prefix, pgUrl };
  const [w1, w2, reader] = await Promise.all([startChild(config), startChild(config), startChild(config)]);
  const all = [w1, w2, reader];
  try {
    // Each key ends on a race: both writers write it at once (each dawdling a random number of
    // event-loop turns between PostgreSQL and the cache) while every instance reads and fills it.
    for (const key of KEYS) {
      await Promise.all([
        w1.call('write', mode, key, `w1-${key}`, 20),
        w2.call('write', mode, key, `w2-${key}`, 20),
        reader.call('getOrLoad', key),
        w1.call('getOrLoad', key),
        w2.call('getOrLoad', key),
      ]);
    }
    await reader.call('readLoop', KEYS, 300);
    await busQuiet(all);
    const serializer = createSerializer();
    const truth = new Map((await pool.query<{ k: string; v: string }>('select k, v from kv')).rows.map((r) => [r.k, r.v]));
    const disagreements: string[] = [];
    for (const key of KEYS) {
      const want = truth.get(key)!;
      const entry = await raw.get(`${prefix}{p:${key}}`);
      const l2 = entry === null ? undefined : serializer.deserialize(decodeEntry(entry)!.payload);
      if (l2 !== undefined && l2 !== want) disagreements.push(`${key}: L2 ${String(l2)}, PostgreSQL ${want}`);
      for (const [i, c] of all.entries()) {
        const l1 = await c.call<string | null>('peek', key);
        if (l1 !== null && l1 !== want) disagreements.push(`${key}: L1 of instance ${i} ${l1}, PostgreSQL ${want}`);
        const read = await c.call<string | null>('get', key);
        if (read !== null && read !== want) disagreements.push(`${key}: get on instance ${i} ${read}, PostgreSQL ${want}`);
      }
    }
    const stats = await Promise.all(all.map((c) => c.call<CacheStats>('stats')));
    const written = stats.reduce((n, s) => n + s.policies.p!.l2.writes, 0);
    console.log(`${mode}: 2 racing writes and 3 reads on each of ${KEYS.length} keys; L2 writes and fills ${written}; ${disagreements.length} disagreements`);
    expect(disagreements).toEqual([]);
    if (mode !== 'plain') expect(written).toBeGreaterThan(0); // write-through did write (not only invalidate)
  } finally {
    await Promise.all(all.map((c) => c.close()));
  }
}, 120_000);
