/**
 * The second half of `npm run demo`: the cache (write-through, hit ratio per tier), three service
 * instances behind the balancer with one made slow (the split shows the balancer avoids it), an
 * online `add` of a third shard with its progress and `verify`, what `onRoute` saw, and with
 * `--keep` the dashboard left running over the cluster.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Kysely, type Generated } from 'kysely';
import { TieredCache, singleRedisTier, publishInstanceStats, type InstanceStatsPublisher } from '../src/cache';
import { Balancer } from '../src/balancer';
import { addShard, verifyShards, TopologyCatalog, startDashboard, type MoveProgress, type RunningDashboard } from '../src/admin';
import type { ShardedDialect } from '../src';

interface DB {
  users: { id: number; name: string };
  orders: { id: Generated<number>; user_id: number; amount: string; status: string };
}

/** What the second half needs from the first. */
export interface OperationsContext {
  readonly db: Kysely<DB>;
  readonly dialect: ShardedDialect;
  readonly catalogUrl: string | undefined;
  readonly redisUrl: string | undefined;
  /** The shard `add` brings in (absent on a cluster the demo did not start). */
  readonly newShard: { readonly id: string; readonly primary: string; readonly replicas: readonly string[] } | undefined;
  /** Brings the new shard's schema up to the others' before the add. */
  readonly prepareNewShard: () => Promise<void>;
  readonly keep: boolean;
}

/** Runs the operations tour; returns what must stay up with `--keep`, and how to stop it. */
export async function operationsTour(ctx: OperationsContext): Promise<() => Promise<void>> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const cache = await cacheTour(ctx);
  cleanups.push(() => cache.close());
  const balancer = await balancerTour(cleanups);
  if (ctx.catalogUrl !== undefined && ctx.newShard !== undefined) await addTour(ctx, ctx.catalogUrl, ctx.newShard);
  let publisher: InstanceStatsPublisher | undefined;
  let dashboard: RunningDashboard | undefined;
  if (ctx.keep && ctx.catalogUrl !== undefined) {
    if (ctx.redisUrl !== undefined) publisher = publishInstanceStats({ redis: ctx.redisUrl, instance: 'demo', cache, balancer });
    dashboard = await startDashboard({ catalog: ctx.catalogUrl, ...(ctx.redisUrl === undefined ? {} : { redis: ctx.redisUrl }) });
    dashboardUrl = dashboard.url;
    // Some traffic for the dashboard's charts while it runs.
    const traffic = setInterval(() => void ctx.db.selectFrom('users').select('name').where('id', '=', 1 + Math.floor(Math.random() * 20)).execute().catch(() => undefined), 50);
    cleanups.push(async () => clearInterval(traffic));
  }
  return async () => {
    await dashboard?.close();
    await publisher?.stop();
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
}

/** The dashboard's URL once {@link operationsTour} started it. */
export let dashboardUrl: string | undefined;

async function cacheTour(ctx: OperationsContext): Promise<TieredCache> {
  const l2 = ctx.redisUrl === undefined ? undefined : singleRedisTier({ url: ctx.redisUrl, prefix: 'demo' });
  const policies = { users: { ttlMillis: 60_000, ...(l2 === undefined ? { levels: ['l1'] as const } : {}) } };
  // Two app instances sharing Redis: A writes through, B reads what A wrote from L2.
  const a = new TieredCache({ policies, ...(l2 === undefined ? {} : { l2 }) });
  const b = ctx.redisUrl === undefined ? undefined : new TieredCache({ policies, l2: singleRedisTier({ url: ctx.redisUrl, prefix: 'demo' }) });
  console.log(`\nCache: L1 in process${l2 === undefined ? '' : ' + L2 Redis'}, write-through of user 7's new name…`);
  await a.set('users', 'user:7', { id: 7, name: 'Ada' }, { save: async (v) => ctx.db.updateTable('users').set({ name: v.name }).where('id', '=', v.id).execute() });
  const load = (id: number) => async () => ctx.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  for (let round = 0; round < 5; round++) for (let id = 1; id <= 10; id++) await a.getOrLoad('users', `user:${id}`, load(id));
  if (b !== undefined) for (let id = 1; id <= 10; id++) await b.getOrLoad('users', `user:${id}`, load(id));
  console.log(`  user 7 from the database: ${(await ctx.db.selectFrom('users').select('name').where('id', '=', 7).executeTakeFirstOrThrow()).name}; from instance ${b === undefined ? 'A' : 'B'}'s cache: ${((await (b ?? a).get<{ name: string }>('users', 'user:7')) ?? { name: '?' }).name}`);
  for (const [name, cache] of [['A', a], ['B', b]] as const) {
    if (cache === undefined) continue;
    const p = cache.stats().policies.users!;
    console.log(`  instance ${name}: L1 hit ratio ${pct(p.l1.hitRate)} (${p.l1.hits}/${p.l1.hits + p.l1.misses}), L2 hit ratio ${pct(p.l2.hitRate)} (${p.l2.hits}/${p.l2.hits + p.l2.misses}), ${p.loads} loads`);
  }
  await b?.close();
  return a;
}

async function balancerTour(cleanups: (() => Promise<unknown>)[]): Promise<Balancer> {
  const delays = [2, 2, 250];
  const servers: Server[] = [];
  const addresses: string[] = [];
  for (const delay of delays) {
    const server = createServer((_req, res) => void setTimeout(() => res.end('ok'), delay));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    addresses.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  cleanups.push(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((resolve) => s.close(resolve));
    }
  });
  const balancer = new Balancer({ instances: addresses.map((address, i) => ({ id: `svc-${i + 1}`, address })) });
  console.log(`\nBalancer (peak EWMA) over three service instances; svc-3 answers in ${delays[2]} ms, the others in ${delays[0]} ms. 300 calls, 8 at a time…`);
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next++ < 300) await balancer.run(async (instance, signal) => (await fetch(instance.address, { signal })).text());
    }),
  );
  for (const i of balancer.stats().instances) {
    console.log(`  ${i.id}: ${String(i.totalRequests).padStart(3)} calls (${pct(i.totalRequests / 300)}), p50 ${i.latencyP50Millis?.toFixed(1) ?? '?'} ms`);
  }
  return balancer;
}

async function addTour(ctx: OperationsContext, catalogUrl: string, shard: NonNullable<OperationsContext['newShard']>): Promise<void> {
  await ctx.prepareNewShard();
  console.log(`\nOnline add of ${shard.id}: its share of slots moves over while the app keeps running…`);
  let last = '';
  const onProgress = (p: MoveProgress): void => {
    const line = `  batch ${p.batch}/${p.batches} ${p.source} → ${p.target}: ${p.phase}, ${p.rowsCopied} rows copied`;
    if (line !== last) console.log(line);
    last = line;
  };
  // A writer keeps going during the move; a write refused at the cutover is retried by the app.
  let writes = 0;
  let moving = true;
  const writer = (async () => {
    for (let id = 1000; moving; id++) {
      await ctx.db.insertInto('users').values({ id, name: `written during the add ${id}` }).execute().then(() => writes++, () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 5)); // a steady trickle, not a load test
    }
  })();
  const result = await addShard({ catalog: catalogUrl, tables: { users: 'id', orders: 'user_id' }, shard: { id: shard.id, primary: shard.primary, replicas: [...shard.replicas] }, onProgress });
  moving = false;
  await writer;
  if (!result.ok) throw new Error(`add failed: ${result.error?.message ?? result.status}`);
  console.log(`  ${result.status}: ${result.rowsCopied} rows copied in ${Math.round(result.durationMillis)} ms, topology version ${result.versions.at(-1)}; ${writes} writes went through meanwhile`);
  const catalog = new TopologyCatalog({ url: catalogUrl });
  const latest = (await catalog.latest())!;
  await catalog.close();
  if (latest.version > ctx.dialect.topology.version) ctx.dialect.setTopology(latest);
  const verify = await verifyShards({ catalog: catalogUrl });
  console.log(`  verify: ${verify.ok ? 'ok' : 'FAILED'}; ${verify.tables.map((t) => `${t.name} ${t.rows} rows`).join(', ')}; ${verify.misplaced.length} misplaced`);
  for (const s of latest.shards) console.log(`  ${s.id}: ${latest.slotsOf(s.id).length} slots`);
  if (!verify.ok) throw new Error('verify found misplaced rows');
}

function pct(x: number): string {
  return `${(x * 100).toFixed(0)}%`;
}
