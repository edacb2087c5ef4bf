// A CommonJS TypeScript app with node10 resolution (as many ts-jest setups), using every entry point.
import { Kysely, PostgresAdapter, type Generated } from 'kysely';
import { ShardedDialect, createTopology, ErrorCodes } from 'kysely-scale';
import { MemoryTier } from 'kysely-scale/cache';
import { Balancer, leastConnections } from 'kysely-scale/balancer';
import { toDocument, type TopologyDocument } from 'kysely-scale/admin';
import { TEST_CLUSTER_DEFAULTS, startTestCluster } from 'kysely-scale/testing';

interface DB {
  users: { id: Generated<number>; name: string };
}

async function main(): Promise<void> {
  const topology = createTopology({ shards: [{ id: 'a', primary: 'postgres://app@127.0.0.1:1/a' }, { id: 'b', primary: 'postgres://app@127.0.0.1:2/b' }] });
  const dialect = new ShardedDialect({ topology, shardKeys: { users: 'id' } });
  const db = new Kysely<DB>({ dialect });
  const compiled = db.selectFrom('users').select(['id', 'name']).where('id', '=', 42).compile();
  const document: TopologyDocument = toDocument(topology);
  console.log(
    JSON.stringify({
      sql: compiled.sql,
      sameKysely: dialect.createAdapter() instanceof PostgresAdapter,
      kyselyEsmFiles: Object.keys(require.cache).filter((p) => p.includes('/node_modules/kysely/dist/esm/')).length,
      noShardKey: ErrorCodes.NO_SHARD_KEY,
      tierSize: new MemoryTier({ maxEntries: 10 }).size,
      instances: new Balancer({ strategy: leastConnections(), instances: [{ id: 'i1', address: 'http://127.0.0.1:1' }] }).instances().length,
      documentShards: document.shards.length,
      testClusterShards: TEST_CLUSTER_DEFAULTS.shards,
      startTestCluster: typeof startTestCluster,
      version: (require('kysely-scale/package.json') as { version: string }).version,
    }),
  );
  await db.destroy();
}

void main();
