import { Kysely, PostgresDialect, type Generated } from 'kysely';
import Cursor from 'pg-cursor';
import { Pool } from 'pg';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import type { ShardedDialectConfig } from '../../../src/sharding/dialect/sharded-dialect-config';
import type { PoolLike, PoolClientLike } from '../../../src/cluster/server-pools';
import { directPool } from '../../support/direct-pool';

export interface DB {
  users: { id: number; name: string; email: string | null };
  orders: { id: Generated<number>; user_id: number; amount: string; status: string | null; created_at: Generated<Date> };
  countries: { code: string; name: string };
}

/** Statements seen per server URL, recorded by wrapping the real pg clients. */
export class StatementLog {
  readonly byServer = new Map<string, { sql: string; values: unknown[] }[]>();
  reset(): void {
    this.byServer.clear();
  }
  on(url: string): { sql: string; values: unknown[] }[] {
    return this.byServer.get(url) ?? [];
  }
}

/**
 * A real pg pool whose clients call `intercept` before each text query (or query config); an intercept that returns
 * an error makes that query fail with it (fault injection on the real client, no mock). With
 * `delayMillis`, each text query's result arrives that much later (a slow link).
 */
export function interceptingPool(url: string, intercept: (sql: string, values: unknown[]) => Error | undefined, delayMillis = 0): PoolLike {
  const pool = directPool({ connectionString: url, max: 5 });
  return {
    on: (event, listener) => pool.on(event, listener),
    end: () => pool.end(),
    async connect(): Promise<PoolClientLike> {
      const client = await pool.connect();
      return {
        query: ((text: unknown, values?: unknown[]) => {
          // A statement as text, or as config (a scatter's prepared statements); a cursor passes through.
          const config = typeof text === 'object' && text !== null && typeof (text as { text?: unknown }).text === 'string' && !('submit' in text) ? (text as { text: string; values?: unknown[] }) : undefined;
          const injected = typeof text === 'string' ? intercept(text, values ?? []) : config !== undefined ? intercept(config.text, config.values ?? []) : undefined;
          if (injected !== undefined) return Promise.reject(injected);
          const result = (client.query as (...a: unknown[]) => unknown)(text, values);
          if (delayMillis === 0 || (typeof text !== 'string' && config === undefined)) return result;
          return (result as Promise<unknown>).then((r) => new Promise((resolve) => setTimeout(() => resolve(r), delayMillis)));
        }) as PoolClientLike['query'],
        release: (destroy?: boolean | Error) => client.release(destroy),
      };
    },
  };
}

/** A real pg pool that records every statement per server in `log`. */
export function countingPool(url: string, log: StatementLog): PoolLike {
  return interceptingPool(url, (sql, values) => {
    const entries = log.byServer.get(url) ?? [];
    entries.push({ sql, values });
    log.byServer.set(url, entries);
    return undefined;
  });
}

export interface ShardedFixture {
  cluster: TestCluster;
  shards: readonly TestShardUrls[];
  topology: Topology;
  log: StatementLog;
  dialect: ShardedDialect;
  db: Kysely<DB>;
  direct: Pool[];
  close(): Promise<void>;
}

export async function startShardedFixture(
  database: string,
  config: Partial<ShardedDialectConfig> = {},
  shardCount = 2,
): Promise<ShardedFixture> {
  const cluster = await startTestCluster({ shards: shardCount });
  const shards = await cluster.createDatabase(database);
  const topology = createTopology({ shards: shards.map((s) => ({ id: s.id, primary: s.primaryUrl })) });
  const log = new StatementLog();
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id', orders: 'user_id' },
    unshardedTables: ['countries'],
    createPool: (server) => countingPool(server.url, log),
    ...config,
  });
  const db = new Kysely<DB>({ dialect });
  await createFixtureSchema(db);
  await dialect.installSlotFunctions();
  const direct = shards.map((s) => quietPool(s.primaryUrl));
  return {
    cluster,
    shards,
    topology,
    log,
    dialect,
    db,
    direct,
    async close() {
      await db.destroy();
      await Promise.all(direct.map((p) => p.end()));
      await cluster.stop();
    },
  };
}

/** The users/orders/countries tables of the fixture, created through `db` (any dialect). */
export async function createFixtureSchema(db: Kysely<DB>): Promise<void> {
  await db.schema.createTable('users').addColumn('id', 'bigint', (c) => c.primaryKey()).addColumn('name', 'text', (c) => c.notNull()).addColumn('email', 'text', (c) => c.unique()).execute();
  await db.schema
    .createTable('orders')
    .addColumn('id', 'serial')
    .addColumn('user_id', 'bigint', (c) => c.notNull())
    .addColumn('amount', 'numeric(12, 2)', (c) => c.notNull())
    .addColumn('status', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(new Date(0).toISOString()))
    .addPrimaryKeyConstraint('orders_pk', ['user_id', 'id'])
    .execute();
  await db.schema.createTable('countries').addColumn('code', 'text', (c) => c.primaryKey()).addColumn('name', 'text').execute();
}

/**
 * A pg Pool with an `error` listener: when the cluster stops, an idle client may still receive
 * PostgreSQL's "terminating connection" (57P01) after `end()` resolved, which without a listener
 * is an unhandled error that Jest pins on a random test.
 */
export function quietPool(url: string, max = 2): Pool {
  const pool = directPool({ connectionString: url, max });
  pool.on('error', () => undefined);
  return pool;
}

/**
 * A database `name` on the first shard's server holding the fixture's schema, used through Kysely's
 * own PostgresDialect: the "one database holding all rows" that sharded results are compared with.
 */
export async function startSingleDatabase(cluster: TestCluster, name: string): Promise<Kysely<DB>> {
  const [first] = await cluster.createDatabase(name);
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: quietPool(first!.primaryUrl, 5), cursor: Cursor }) });
  await createFixtureSchema(db);
  return db;
}
