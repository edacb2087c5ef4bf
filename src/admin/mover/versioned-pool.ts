/**
 * A pg pool for `ShardedDialectConfig.createPool` whose connections tell the shard which topology
 * version they route by (the session setting `kysely_scale.topology_version`), set once per
 * connection per version, so a shard that a slot moved to or from refuses a stale router's reads
 * and writes instead of answering them wrongly.
 */
import { Pool, type PoolClient } from 'pg';
import { SET_TOPOLOGY_VERSION_SQL } from '../../cluster/topology-fence';
import type { PoolClientLike, PoolLike, ServerPoolOptions } from '../../cluster/server-pools';
import type { ServerSpec } from '../../cluster/topology';

const VERSION = Symbol('kysely-scale topology version');

/** A `createPool` factory: `createPool: topologyVersionPool(() => dialect.topology.version)`. */
export function topologyVersionPool(version: () => number, options: ServerPoolOptions = {}): (server: ServerSpec) => PoolLike {
  return (server) => {
    const pool = new Pool({
      connectionString: server.url,
      max: options.max ?? 10,
      idleTimeoutMillis: options.idleTimeoutMillis ?? 30_000,
      connectionTimeoutMillis: options.connectionTimeoutMillis ?? 10_000,
      application_name: options.applicationName ?? 'kysely-scale',
      ...(options.statementTimeoutMillis ? { statement_timeout: options.statementTimeoutMillis } : {}),
    });
    return {
      on: (event, listener) => pool.on(event, listener),
      end: () => pool.end(),
      get totalCount() {
        return pool.totalCount;
      },
      get idleCount() {
        return pool.idleCount;
      },
      get waitingCount() {
        return pool.waitingCount;
      },
      async connect(): Promise<PoolClientLike> {
        const client = (await pool.connect()) as PoolClient & { [VERSION]?: number };
        const wanted = version();
        if (client[VERSION] !== wanted) {
          try {
            await client.query(SET_TOPOLOGY_VERSION_SQL, [String(wanted)]);
          } catch (error) {
            client.release(true);
            throw error;
          }
          client[VERSION] = wanted;
        }
        return client as unknown as PoolClientLike;
      },
    };
  };
}
