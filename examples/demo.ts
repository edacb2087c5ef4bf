/**
 * `npm run demo`: kysely-scale end to end, with no configuration. It starts a local test cluster
 * (2 shards, each a primary with a streaming replica), or uses an existing cluster when
 * KYSELY_SCALE_SHARDS lists the shard primaries (e.g. the docker-compose one), and optionally
 * KYSELY_SCALE_REPLICAS one replica per shard in the same order:
 *
 *   KYSELY_SCALE_SHARDS=postgres://postgres@127.0.0.1:5433/postgres,postgres://postgres@127.0.0.1:5435/postgres \
 *   KYSELY_SCALE_REPLICAS=postgres://postgres@127.0.0.1:5434/postgres,postgres://postgres@127.0.0.1:5436/postgres npm run demo
 *
 * The demo drops and recreates the tables `users` and `orders`. On a cluster it did not start, it
 * refuses to when they exist, unless run with `--force` (`npm run demo -- --force`).
 *
 * Then (demo-operations.ts) the cache, three service instances behind the balancer with one made
 * slow, and, on the cluster it started, an online add of a third shard with verify.
 * `npm run demo -- --keep` leaves the cluster and the dashboard running and prints the URL.
 */
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely';
import { Client, Pool } from 'pg';
import { ShardedDialect, createTopology, withShard, CrossShardTransactionError, redactText, redactUrl, type Topology, type RouteEvent } from '../src';
import { startTestCluster, type TestCluster } from '../src/testing';
import { initCatalog, TopologyCatalog } from '../src/admin';
import { operationsTour, type OperationsContext } from './demo-operations';

interface DB {
  users: { id: number; name: string };
  orders: { id: Generated<number>; user_id: number; amount: string; status: string };
}

const list = (value: string | undefined): string[] => (value ?? '').split(',').map((u) => u.trim()).filter((u) => u !== '');

interface DemoServers {
  urls: string[];
  replicaUrls: string[];
  cluster?: TestCluster;
  /** A third shard for the online add, a catalog database and Redis: only on a cluster the demo started. */
  newShard?: { id: string; primary: string; replicas: string[] };
  catalogUrl?: string;
  redisUrl?: string;
}

async function shardUrls(): Promise<DemoServers> {
  const fromEnv = list(process.env.KYSELY_SCALE_SHARDS);
  if (fromEnv.length > 0) return { urls: fromEnv, replicaUrls: list(process.env.KYSELY_SCALE_REPLICAS) };
  console.log('Starting a local test cluster (3 shards × primary + streaming replica, Redis); the third shard joins later…');
  const started = Date.now();
  const cluster = await startTestCluster({ shards: 3, replicasPerShard: 1, redis: true });
  const shards = await cluster.createDatabase('kysely_scale_demo');
  const [catalog] = await cluster.createDatabase('kysely_scale_demo_catalog');
  console.log(`  started in ${Date.now() - started} ms (${cluster.backend} processes)`);
  const third = shards[2]!;
  return {
    urls: shards.slice(0, 2).map((s) => s.primaryUrl),
    replicaUrls: shards.slice(0, 2).map((s) => s.replicaUrls[0]!),
    cluster,
    newShard: { id: 'shard2', primary: third.primaryUrl, replicas: [...third.replicaUrls] },
    catalogUrl: catalog!.primaryUrl,
    redisUrl: cluster.redis[0]!.url,
  };
}

const DEMO_TABLES = ['users', 'orders'];

/** The demo's tables that already exist on `urls`, as `shard (url): table, …` lines. */
async function existingTables(urls: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  for (const [i, url] of urls.entries()) {
    const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const { rows } = await client.query<{ name: string }>('select t as name from unnest($1::text[]) t where to_regclass(t) is not null', [DEMO_TABLES]);
      if (rows.length > 0) found.push(`shard${i} (${redactUrl(url)}): ${rows.map((r) => r.name).join(', ')}`);
    } catch (error) {
      throw new Error(`shard${i} ${redactUrl(url)} does not answer: ${redactText((error as Error).message, [url])}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return found;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const force = args.includes('--force');
  const keep = args.includes('--keep');
  const unknown = args.filter((a) => a !== '--force' && a !== '--keep');
  if (unknown.length > 0) throw new Error(`unknown argument ${JSON.stringify(redactText(unknown[0]!))}; the demo takes only --force and --keep`);
  const { urls, replicaUrls, cluster, newShard, catalogUrl, redisUrl } = await shardUrls();
  if (cluster === undefined && !force) {
    const existing = await existingTables(urls);
    if (existing.length > 0) {
      console.error(
        [
          'The demo drops and recreates the tables users and orders, and these shards (from KYSELY_SCALE_SHARDS, a cluster the demo did not start) already have some:',
          ...existing.map((line) => `  ${line}`),
          'Nothing was changed. Run `npm run demo -- --force` to drop them, or unset KYSELY_SCALE_SHARDS to let the demo start a cluster of its own.',
        ].join('\n'),
      );
      process.exitCode = 2;
      return;
    }
  }
  const topology = createTopology({ shards: urls.map((primary, i) => ({ id: `shard${i}`, primary, replicas: replicaUrls[i] === undefined ? [] : [replicaUrls[i]!] })) });
  for (const shard of topology.shards) {
    console.log(`  ${shard.id}: ${shard.primary.redactedUrl} (+${shard.replicas.length} replica), ${topology.slotsOf(shard.id).length} slots`);
  }
  // The operator's catalog: the topology every instance follows, and what `add` changes.
  if (catalogUrl !== undefined) await initCatalog(catalogUrl, topology.shards.map((s) => ({ id: s.id, primary: s.primary.url, replicas: s.replicas.map((r) => r.url) })));
  const catalog = catalogUrl === undefined ? undefined : new TopologyCatalog({ url: catalogUrl });
  // What onRoute saw: statements per shard and server role.
  const routes = new Map<string, number>();
  const onRoute = (event: RouteEvent): void => {
    for (const s of event.servers) routes.set(`${s.shardId} ${s.role}`, (routes.get(`${s.shardId} ${s.role}`) ?? 0) + 1);
  };
  // Plain reads go to the replicas; the demo runs in one read-your-writes context, so a read right
  // after a write still sees it (from the primary until the replica has replayed it). A statement
  // a shard refuses during a slot move reloads the topology from the catalog and runs again.
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id', orders: 'user_id' },
    keylessPolicy: { orders: 'scatter' },
    replicas: { readFrom: 'replica' },
    onRoute,
    ...(catalog === undefined ? {} : { topologySource: catalog }),
  });
  const db = new Kysely<DB>({ dialect });
  let stop: (() => Promise<void>) | undefined;
  try {
    await dialect.readYourWrites(() => tour(db, dialect, topology));
    const context: OperationsContext = { db, dialect, catalogUrl, redisUrl, newShard, keep, prepareNewShard: () => createSchemaOn(newShard!.primary) };
    stop = await operationsTour(context);
    console.log('\nonRoute saw (statements per shard and server role):');
    for (const [where, count] of [...routes].sort()) console.log(`  ${where}: ${count}`);
    if (keep && cluster !== undefined) {
      await keepRunning(stop, db, cluster, catalog);
      return;
    }
  } finally {
    if (!keep || cluster === undefined) {
      await stop?.();
      await db.destroy();
      await catalog?.close();
      await cluster?.stop();
    }
  }
  console.log('\nDone.');
}

/** `--keep`: the cluster and the dashboard stay up until Ctrl-C. */
async function keepRunning(stop: () => Promise<void>, db: Kysely<DB>, cluster: TestCluster, catalog: TopologyCatalog | undefined): Promise<void> {
  const { dashboardUrl } = await import('./demo-operations');
  console.log(`\nDashboard: ${dashboardUrl ?? '(not started)'}`);
  console.log('The cluster and the dashboard keep running; press Ctrl-C to stop them.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await stop();
  await db.destroy();
  await catalog?.close();
  await cluster.stop();
}

/** The demo's tables, through `db` (the sharded db broadcasts the DDL; a plain one creates them on one server). */
async function createSchema(db: Kysely<DB>): Promise<void> {
  await db.schema.createTable('users').addColumn('id', 'bigint', (c) => c.primaryKey()).addColumn('name', 'text', (c) => c.notNull()).execute();
  await db.schema
    .createTable('orders')
    .addColumn('id', 'serial')
    .addColumn('user_id', 'bigint', (c) => c.notNull())
    .addColumn('amount', 'numeric(10, 2)', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('orders_pk', ['user_id', 'id'])
    .execute();
}

/** The new shard gets the same schema before `add` compares it with the others'. */
async function createSchemaOn(url: string): Promise<void> {
  const plain = new Kysely<DB>({ dialect: new PostgresDialect({ pool: new Pool({ connectionString: url, max: 1 }) }) });
  try {
    await createSchema(plain);
  } finally {
    await plain.destroy();
  }
}

async function tour(db: Kysely<DB>, dialect: ShardedDialect, topology: Topology): Promise<void> {
  // DDL goes to every shard.
  await db.schema.dropTable('orders').ifExists().execute();
  await db.schema.dropTable('users').ifExists().execute();
  await createSchema(db);
  await dialect.installSlotFunctions();

  console.log('\nWriting 20 users and 60 orders (multi-row inserts are split per shard)…');
  await db.insertInto('users').values(Array.from({ length: 20 }, (_, i) => ({ id: i + 1, name: `user ${i + 1}` }))).execute();
  await db
    .insertInto('orders')
    .values(Array.from({ length: 60 }, (_, i) => ({ user_id: (i % 20) + 1, amount: ((i * 37) % 100 + 0.5).toFixed(2), status: i % 3 === 0 ? 'paid' : 'new' })))
    .execute();

  console.log('\nRows per shard (each row lives on the shard that owns slot(user_id)):');
  for (const shard of topology.shards) {
    const onShard = db.withPlugin(withShard(shard.id));
    const users = await onShard.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    const ids = await sql<{ id: string; slot: number }>`select id, kysely_scale_slot(id) as slot from users order by id limit 5`.execute(onShard);
    console.log(`  ${shard.id}: ${users.n} users, e.g. ${ids.rows.map((r) => `id ${r.id} (slot ${r.slot})`).join(', ')}`);
  }

  const user = 7;
  const mine = await db.selectFrom('orders').select(['id', 'amount', 'status']).where('user_id', '=', user).orderBy('id').execute();
  console.log(`\nOrders of user ${user} (read from ${topology.shardForKey(user).id} only):`, mine);

  const top = await db.selectFrom('orders').select(['user_id', 'amount']).orderBy('amount', 'desc').orderBy('user_id').limit(5).execute();
  console.log('\nScatter: the 5 largest orders over all shards, merged:', top);
  const byStatus = await db
    .selectFrom('orders')
    .select((eb) => ['status', eb.fn.countAll<string>().as('orders'), eb.fn.sum<string>('amount').as('total'), eb.fn.avg<string>('amount').as('average')])
    .groupBy('status')
    .orderBy('status')
    .execute();
  console.log('Scatter: count, sum and avg by status, merged:', byStatus);

  await db.transaction().execute(async (trx) => {
    await trx.updateTable('orders').set({ status: 'paid' }).where('user_id', '=', user).execute();
    await trx.insertInto('orders').values({ user_id: user, amount: '9.99', status: 'new' }).execute();
  });
  console.log(`\nTransaction on ${topology.shardForKey(user).id} committed (user ${user}).`);

  const other = [...Array(20).keys()].map((i) => i + 1).find((id) => topology.shardForKey(id).id !== topology.shardForKey(user).id)!;
  try {
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('orders').values({ user_id: user, amount: '1.00', status: 'new' }).execute();
      await trx.insertInto('orders').values({ user_id: other, amount: '1.00', status: 'new' }).execute();
    });
  } catch (error) {
    if (!(error instanceof CrossShardTransactionError)) throw error;
    console.log(`A transaction touching users ${user} and ${other} was refused (${error.code}); nothing of it committed.`);
  }

  await dialect.refreshReplicas();
  console.log('\nReplicas (plain reads outside transactions go to those serving reads):');
  for (const r of dialect.replicaStatus()) {
    console.log(`  ${r.shardId}: ${r.server}, ${r.lagBytes ?? '?'} bytes behind, ${r.eligible ? 'serving reads' : `not serving reads (${r.problem ?? 'lagging'})`}`);
  }
  await db.insertInto('orders').values({ user_id: user, amount: '4.20', status: 'new' }).execute();
  const justWritten = await db.selectFrom('orders').select(['user_id', 'amount']).where('user_id', '=', user).where('amount', '=', '4.20').execute();
  console.log('Read-your-writes: an order read back right after its insert:', justWritten);
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`demo failed: ${redactText(message)}`);
  process.exit(1);
});
