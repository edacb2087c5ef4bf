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
 */
import { Kysely, sql, type Generated } from 'kysely';
import { Client } from 'pg';
import { ShardedDialect, createTopology, withShard, CrossShardTransactionError, redactText, redactUrl, type Topology } from '../src';
import { startTestCluster, type TestCluster } from '../src/testing';

interface DB {
  users: { id: number; name: string };
  orders: { id: Generated<number>; user_id: number; amount: string; status: string };
}

const list = (value: string | undefined): string[] => (value ?? '').split(',').map((u) => u.trim()).filter((u) => u !== '');

async function shardUrls(): Promise<{ urls: string[]; replicaUrls: string[]; cluster?: TestCluster }> {
  const fromEnv = list(process.env.KYSELY_SCALE_SHARDS);
  if (fromEnv.length > 0) return { urls: fromEnv, replicaUrls: list(process.env.KYSELY_SCALE_REPLICAS) };
  console.log('Starting a local test cluster (2 shards × primary + streaming replica)…');
  const started = Date.now();
  const cluster = await startTestCluster({ shards: 2, replicasPerShard: 1 });
  const shards = await cluster.createDatabase('kysely_scale_demo');
  console.log(`  started in ${Date.now() - started} ms (${cluster.backend} processes)`);
  return { urls: shards.map((s) => s.primaryUrl), replicaUrls: shards.map((s) => s.replicaUrls[0]!), cluster };
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
  const force = process.argv.slice(2).includes('--force');
  const unknown = process.argv.slice(2).filter((a) => a !== '--force');
  if (unknown.length > 0) throw new Error(`unknown argument ${JSON.stringify(redactText(unknown[0]!))}; the demo takes only --force`);
  const { urls, replicaUrls, cluster } = await shardUrls();
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
  // Plain reads go to the replicas; the demo runs in one read-your-writes context, so a read right
  // after a write still sees it (from the primary until the replica has replayed it).
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id', orders: 'user_id' }, keylessPolicy: { orders: 'scatter' }, replicas: { readFrom: 'replica' } });
  const db = new Kysely<DB>({ dialect });
  try {
    await dialect.readYourWrites(() => tour(db, dialect, topology));
  } finally {
    await db.destroy();
    await cluster?.stop();
  }
  console.log('\nDone.');
}

async function tour(db: Kysely<DB>, dialect: ShardedDialect, topology: Topology): Promise<void> {
  // DDL goes to every shard.
  await db.schema.dropTable('orders').ifExists().execute();
  await db.schema.dropTable('users').ifExists().execute();
  await db.schema.createTable('users').addColumn('id', 'bigint', (c) => c.primaryKey()).addColumn('name', 'text', (c) => c.notNull()).execute();
  await db.schema
    .createTable('orders')
    .addColumn('id', 'serial')
    .addColumn('user_id', 'bigint', (c) => c.notNull())
    .addColumn('amount', 'numeric(10, 2)', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('orders_pk', ['user_id', 'id'])
    .execute();
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
