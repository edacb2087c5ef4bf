/**
 * `verify` behind a migration's lock: its scans used to wait for the table's lock forever (and
 * every app statement on the table queued behind them). Now each table's lock has a deadline,
 * past which verify stops with E_MOVE_REFUSED (reason `table-locked`) naming the table, the shard
 * and the backends keeping the lock: the migration holding or awaiting ACCESS EXCLUSIVE, and the
 * transaction it waits for, with their statements' literals hidden.
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { admin } from '../admin/admin-cli-process';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { withDeadline } from '../../../src/kernel/deadline';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { queueMigration } from './queued-migration';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_verify_lock', 2);
  await f.seed(await f.init(2), 0, 100);
  expect((await verifyShards({ catalog: f.catalogUrl, tables: TABLES })).ok).toBe(true); // registers the tables
}, 150_000);

afterAll(() => f?.close());

async function session(applicationName: string): Promise<Client> {
  const client = directClient({ connectionString: f.shards[1]!.primaryUrl, application_name: applicationName });
  await client.connect();
  return client;
}

const pidOf = (client: Client): number => (client as unknown as { processID: number }).processID;

test('a migration holding ACCESS EXCLUSIVE: verify stops after lockTimeoutMillis, naming the table, the shard and the migration', async () => {
  const migration = await session('schema migration');
  try {
    await migration.query('begin');
    await migration.query('lock table orders in access exclusive mode');
    const started = performance.now();
    const result = await withDeadline(verifyShards({ catalog: f.catalogUrl, lockTimeoutMillis: 300 }), 15_000, 'verify behind a lock');
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(result.ok).toBe(false);
    expect(result.error).toMatchObject({ code: 'E_MOVE_REFUSED', context: { reason: 'table-locked', table: 'orders', shard: 'shard1', pids: [pidOf(migration)] } });
    expect(result.error!.message).toContain('verify could not read table orders on shard "shard1": its lock stayed taken for 300 ms');
    expect(result.error!.message).toContain(`backend ${pidOf(migration)} "schema migration" idle in transaction`);
    expect(result.error!.message).toContain('holding its lock on orders: "lock table orders in access exclusive mode"');
  } finally {
    await migration.query('rollback');
    await migration.end();
  }
  expect((await verifyShards({ catalog: f.catalogUrl })).ok).toBe(true);
}, 60_000);

test('a migration queued behind a long transaction (CLI, default deadline): exit 1 with the code first, both backends named, no literal shown', async () => {
  const queued = await queueMigration(f.shards[1]!.primaryUrl, 'orders', f.pools[1]!);
  const { reader, migration } = queued;
  try {
    const run = await admin('verify', '--catalog', f.catalogUrl);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^E_MOVE_REFUSED: verify could not read table orders on shard "shard1": its lock stayed taken for 5000 ms by /);
    expect(run.stdout).toContain(`backend ${pidOf(migration)} "schema migration" active`);
    expect(run.stdout).toContain('waiting for its lock on orders: "alter table orders add column note text default ?"');
    expect(run.stdout).toMatch(new RegExp(`backend ${pidOf(reader)} "report job" idle in transaction for (?:[5-9]|[1-9]\\d+) s`)); // its transaction's age (the verify waited 5 s), not our own's
    expect(run.stdout).toContain('holding its lock on orders: "select count(*) from orders where amount > ? and ? <> ?"');
    expect(run.stdout).not.toContain('Sekret');
    expect(run.stdout).not.toContain('hush');
    await queued.finish();
  } finally {
    await queued.close();
  }
}, 60_000);
