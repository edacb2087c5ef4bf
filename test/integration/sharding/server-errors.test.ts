/**
 * Connection and server errors name the shard and the server's role, keep pg's own fields, and
 * never show a password: a shard that is down, a database or role that does not exist, and a
 * statement PostgreSQL refuses.
 */
import { createServer } from 'node:net';
import { Kysely, sql } from 'kysely';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { identifyServer } from '../../../src/sharding/dialect/server-errors';
import type { Pool } from 'pg';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';

interface DB {
  accounts: { id: number; email: string };
}

const SECRET = 's3cret-pw';
let cluster: TestCluster;
let shardUrl: string;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1 });
  const [shard] = await cluster.createDatabase('server_errors');
  shardUrl = shard!.primaryUrl;
}, 60_000);
afterAll(() => cluster?.stop());

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The shard's URL with another user, password or database. */
function variant(change: { user?: string; password?: string; database?: string }): string {
  const url = new URL(shardUrl);
  if (change.user !== undefined) url.username = change.user;
  if (change.password !== undefined) url.password = change.password;
  if (change.database !== undefined) url.pathname = `/${change.database}`;
  return url.toString();
}

async function errorOf(url: string, shardId: string): Promise<Error & Record<string, unknown>> {
  const db = new Kysely<DB>({ dialect: new ShardedDialect({ topology: createTopology({ shards: [{ id: shardId, primary: url }] }), pool: { connectionTimeoutMillis: 5000 } }) });
  try {
    return await sql`select 1`.execute(db).then(
      () => {
        throw new Error('expected the statement to fail');
      },
      (e: Error & Record<string, unknown>) => e,
    );
  } finally {
    await db.destroy();
  }
}

function expectNoPassword(error: Error & Record<string, unknown>): void {
  for (const text of [error.message, String(error.stack), JSON.stringify(error), String(error.server)]) expect(text).not.toContain(SECRET);
}

test('a shard that is down: the message names the shard, its role and its redacted address; the socket error code stays', async () => {
  const error = await errorOf(`postgres://postgres:${SECRET}@127.0.0.1:${await closedPort()}/app`, 'eu-2');
  expect(error.code).toBe('ECONNREFUSED');
  expect(error.message).toMatch(/^Cannot connect to shard "eu-2" primary postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/app: .*ECONNREFUSED/);
  expect({ shardId: error.shardId, serverRole: error.serverRole }).toEqual({ shardId: 'eu-2', serverRole: 'primary' });
  expectNoPassword(error);
});

test('a database or role that does not exist: PostgreSQL’s SQLSTATE and fields stay, the shard and role are named, no password', async () => {
  const noDatabase = await errorOf(variant({ password: SECRET, database: 'no_such_db' }), 'shard7');
  expect(noDatabase).toMatchObject({ code: '3D000', severity: 'FATAL', shardId: 'shard7', serverRole: 'primary' });
  expect(noDatabase.message).toMatch(/^Cannot connect to shard "shard7" primary .*\*\*\*.*: database "no_such_db" does not exist$/);
  expectNoPassword(noDatabase);
  const noRole = await errorOf(variant({ user: 'nobody', password: SECRET }), 'shard7');
  expect(noRole).toMatchObject({ code: '28000', shardId: 'shard7', serverRole: 'primary' });
  expect(noRole.message).toContain('role "nobody" does not exist');
  expectNoPassword(noRole);
});

test('a statement PostgreSQL refuses keeps its message and fields, and names its shard and role without changing how it prints', async () => {
  const db = new Kysely<DB>({ dialect: new ShardedDialect({ topology: createTopology({ shards: [{ id: 'only', primary: variant({ password: SECRET }) }] }), shardKeys: { accounts: 'id' } }) });
  try {
    await db.schema.createTable('accounts').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('email', 'text', (c) => c.unique()).execute();
    await db.insertInto('accounts').values({ id: 1, email: 'a@example.com' }).execute();
    const error = await db.insertInto('accounts').values({ id: 2, email: 'a@example.com' }).execute().then(
      () => new Error('expected a unique violation') as Error & Record<string, unknown>,
      (e: Error & Record<string, unknown>) => e,
    );
    expect(error).toMatchObject({ code: '23505', constraint: 'accounts_email_key', table: 'accounts', detail: 'Key (email)=(a@example.com) already exists.' });
    expect(error.message).toBe('duplicate key value violates unique constraint "accounts_email_key"');
    expect({ shardId: error.shardId, serverRole: error.serverRole }).toEqual({ shardId: 'only', serverRole: 'primary' });
    expect(Object.keys(error)).not.toContain('shardId'); // pg's own enumerable fields only
    expectNoPassword(error);
    // Inside a transaction and in a stream too.
    const inTrx = await db.transaction().execute((trx) => trx.insertInto('accounts').values({ id: 3, email: 'a@example.com' }).execute()).catch((e: Record<string, unknown>) => e);
    expect(inTrx).toMatchObject({ code: '23505', shardId: 'only', serverRole: 'primary' });
    const streamed = await (async () => {
      for await (const row of db.selectFrom('accounts').select(sql<number>`1 / (id - 1)`.as('x')).where('id', '=', 1).stream()) void row;
    })().catch((e: Record<string, unknown>) => e);
    expect(streamed).toMatchObject({ code: '22012', shardId: 'only', serverRole: 'primary' });
  } finally {
    await db.destroy();
  }
});

test('replicas are named as replicas', () => {
  const topology = createTopology({ shards: [{ id: 's0', primary: 'postgres://u:p@h0/db', replicas: ['postgres://u:p@h1/db'] }] });
  expect(identifyServer(topology, topology.shards[0]!.replicas[0]!)).toEqual({ shardId: 's0', serverRole: 'replica', server: 'postgres://u:***@h1/db' });
  expect(identifyServer(topology, topology.shards[0]!.primary)).toEqual({ shardId: 's0', serverRole: 'primary', server: 'postgres://u:***@h0/db' });
});

test('a custom pool whose server ends a connection checked out in a transaction: the next statement fails, the process does not crash', async () => {
  const admin = directPool({ connectionString: shardUrl, max: 1 });
  // As many apps write a pool: a listener on the pool only (pg-pool listens to idle clients only).
  const pools: Pool[] = [];
  const db = new Kysely<DB>({
    dialect: new ShardedDialect({
      topology: createTopology({ shards: [{ id: 'shard0', primary: shardUrl }] }),
      createPool: (server) => {
        const pool = directPool({ connectionString: server.url, max: 2 });
        pool.removeAllListeners('connect'); // no listener on its clients
        pools.push(pool);
        return pool as never;
      },
    }),
  });
  const crashes: unknown[] = [];
  const onUncaught = (error: unknown): void => void crashes.push(error);
  process.on('uncaughtException', onUncaught);
  try {
    const failure = await db
      .transaction()
      .execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
        await admin.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
        // Until the server's 57P01 has reached the idle checked-out client.
        await until('the connection ended', async () => (await admin.query('select 1 from pg_stat_activity where pid = $1', [rows[0]!.pid])).rows.length === 0, 5000);
        await new Promise((resolve) => setImmediate(resolve));
        await sql`select 1`.execute(trx);
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(failure).toBeInstanceOf(Error);
    expect(crashes).toEqual([]);
  } finally {
    process.off('uncaughtException', onUncaught);
    await db.destroy();
    await admin.end();
  }
}, 30_000);
