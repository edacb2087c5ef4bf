// A plain ESM app using every entry point. It also starts a one-shard test cluster and streams
// rows from it (pg-cursor, a CommonJS module loaded lazily, must load from the ESM build too).
// The packaging test runs it with a fake Docker engine and without testcontainers installed.
import { createRequire } from 'node:module';
import { Kysely, PostgresAdapter } from 'kysely';
import { ShardedDialect, createTopology, ErrorCodes } from 'kysely-scale';
import { MemoryTier } from 'kysely-scale/cache';
import { Balancer, leastConnections } from 'kysely-scale/balancer';
import { toDocument } from 'kysely-scale/admin';
import { TEST_CLUSTER_DEFAULTS, startTestCluster } from 'kysely-scale/testing';

const warnings = [];
process.on('warning', (warning) => warnings.push({ name: warning.name, code: warning.code, message: warning.message }));

const cluster = await startTestCluster({ shards: 1 });
let streamed;
let secondBackend;
let dockerRefusal;
try {
  const [shard] = await cluster.createDatabase('consumer');
  const topology = createTopology({ shards: [{ id: shard.id, primary: shard.primaryUrl }] });
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' } });
  const db = new Kysely({ dialect });
  try {
    await db.schema.createTable('users').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('name', 'text').execute();
    await db.insertInto('users').values({ id: 1, name: 'one' }).execute();
    streamed = [];
    for await (const row of db.selectFrom('users').select(['id', 'name']).where('id', '=', 1).stream()) streamed.push(row);
  } finally {
    await db.destroy();
  }
  // A second cluster in the same process: the notice about testcontainers is given once.
  const second = await startTestCluster({ shards: 0 });
  secondBackend = second.backend;
  await second.stop();
  // Asked for Docker explicitly, it fails with a coded error naming the package instead.
  dockerRefusal = await startTestCluster({ backend: 'docker', shards: 0 }).then(
    (c) => c.stop().then(() => null),
    (error) => ({ code: error.code, message: error.message }),
  );
} finally {
  await cluster.stop();
}
// Warnings are emitted on the next tick.
await new Promise((resolve) => setImmediate(resolve));

const topology = createTopology({ shards: [{ id: 'a', primary: 'postgres://app@127.0.0.1:1/a' }, { id: 'b', primary: 'postgres://app@127.0.0.1:2/b' }] });
const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' } });
const db = new Kysely({ dialect });
const require = createRequire(import.meta.url);
console.log(
  JSON.stringify({
    sql: db.selectFrom('users').select(['id', 'name']).where('id', '=', 42).compile().sql,
    sameKysely: dialect.createAdapter() instanceof PostgresAdapter,
    kyselyCommonJsFiles: Object.keys(require.cache).filter((p) => p.includes('/node_modules/kysely/')).length,
    noShardKey: ErrorCodes.NO_SHARD_KEY,
    tierSize: new MemoryTier({ maxEntries: 10 }).size,
    instances: new Balancer({ strategy: leastConnections(), instances: [{ id: 'i1', address: 'http://127.0.0.1:1' }] }).instances().length,
    documentShards: toDocument(topology).shards.length,
    testClusterShards: TEST_CLUSTER_DEFAULTS.shards,
    startTestCluster: typeof startTestCluster,
    version: require('kysely-scale/package.json').version,
    backend: cluster.backend,
    secondBackend,
    dockerRefusal,
    streamed,
    warnings,
  }),
);
await db.destroy();
