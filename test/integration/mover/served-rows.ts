/**
 * What routers at the catalog's latest version are served, for mover tests that end with shards
 * refusing or hiding rows when a cutover is left half done.
 */
import type { MoverFixture } from './mover-fixture';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import type { Topology } from '../../../src/cluster/topology';
import { directPool } from '../../support/direct-pool';

/** The latest topology of the catalog at `catalogUrl`. */
export async function latestTopology(catalogUrl: string): Promise<Topology> {
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    return (await catalog.latest())!;
  } finally {
    await catalog.close();
  }
}

/** The shard of two that does not own slot 0: where a test moves slot 0 next. */
export async function otherThanSlot0Owner(catalogUrl: string): Promise<string> {
  return (await latestTopology(catalogUrl)).shardForSlot(0).id === 'shard0' ? 'shard1' : 'shard0';
}

/** Users an app session at the catalog's latest version reads on every shard, in all (a shard that refuses it fails the count). */
export async function usersAtLatest(f: MoverFixture): Promise<number> {
  const { version } = await latestTopology(f.catalogUrl);
  let total = 0;
  for (let i = 0; i < f.pools.length; i++) {
    const app = directPool({ connectionString: f.appUrl(i), max: 1, options: `-c kysely_scale.topology_version=${version}` });
    try {
      total += (await app.query<{ n: number }>('select count(*)::int as n from users')).rows[0]!.n;
    } finally {
      await app.end();
    }
  }
  return total;
}
