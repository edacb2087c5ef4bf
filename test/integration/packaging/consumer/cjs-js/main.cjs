// A plain CommonJS app using every entry point.
const { Kysely, PostgresAdapter } = require('kysely');
const { ShardedDialect, createTopology, ErrorCodes } = require('kysely-scale');
const { MemoryTier } = require('kysely-scale/cache');
const { Balancer, leastConnections } = require('kysely-scale/balancer');
const { toDocument } = require('kysely-scale/admin');
const { TEST_CLUSTER_DEFAULTS, startTestCluster } = require('kysely-scale/testing');

async function main() {
  const topology = createTopology({ shards: [{ id: 'a', primary: 'postgres://app@127.0.0.1:1/a' }, { id: 'b', primary: 'postgres://app@127.0.0.1:2/b' }] });
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' } });
  const db = new Kysely({ dialect });
  const compiled = db.selectFrom('users').select(['id', 'name']).where('id', '=', 42).compile();
  console.log(
    JSON.stringify({
      sql: compiled.sql,
      sameKysely: dialect.createAdapter() instanceof PostgresAdapter,
      kyselyEsmFiles: Object.keys(require.cache).filter((p) => p.includes('/node_modules/kysely/dist/esm/')).length,
      noShardKey: ErrorCodes.NO_SHARD_KEY,
      tierSize: new MemoryTier({ maxEntries: 10 }).size,
      instances: new Balancer({ strategy: leastConnections(), instances: [{ id: 'i1', address: 'http://127.0.0.1:1' }] }).instances().length,
      documentShards: toDocument(topology).shards.length,
      testClusterShards: TEST_CLUSTER_DEFAULTS.shards,
      startTestCluster: typeof startTestCluster,
      version: require('kysely-scale/package.json').version,
    }),
  );
  await db.destroy();
}

main();
