/**
 * A drain's plan behind a migration's lock: it counts the drained shard's rows whose shard key is
 * NULL and the unsharded tables' rows (on the holder, and on the target), and each count waited
 * for its table's lock forever (a migration's ACCESS EXCLUSIVE, held or queued behind a long
 * transaction), the operator's command with it. Now each waits at most PLAN_LOCK_TIMEOUT_MILLIS,
 * then the drain is refused (E_MOVE_REFUSED, reason `table-locked`, nothing changed) naming the
 * table, the shard and the backends keeping the lock; once the lock is gone the drain plans.
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { PLAN_LOCK_TIMEOUT_MILLIS } from '../../../src/admin/mover/plan-reads';
import { ErrorCodes } from '../../../src/kernel/errors';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { within } from './within-deadline';
import { queueMigration } from './queued-migration';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_drain_plan_lock', 2);
  await f.seed(await f.init(2), 0, 100);
  await f.pools[0]!.query(`insert into countries values ('fr', 'France')`); // shard0 holds the unsharded tables
}, 150_000);

afterAll(() => f?.close());

async function session(shard: number, applicationName: string): Promise<Client> {
  const client = directClient({ connectionString: f.shards[shard]!.primaryUrl, application_name: applicationName });
  await client.connect();
  return client;
}

const pidOf = (client: Client): number => (client as unknown as { processID: number }).processID;

/** A dry-run drain of `shardId`, timed; the old code waited for the lock, past the test's limit. */
async function plannedDrain(shardId: string): Promise<{ result: Awaited<ReturnType<typeof drainShard>>; millis: number }> {
  const started = performance.now();
  const result = await within(PLAN_LOCK_TIMEOUT_MILLIS + 10_000, 'a drain planned behind a lock', drainShard({ catalog: f.catalogUrl, tables: TABLES, shardId, dryRun: true }));
  return { result, millis: performance.now() - started };
}

test('the NULL-key count behind a migration queued after a long transaction: refused after the lock deadline, both backends named; then the drain plans', async () => {
  const queued = await queueMigration(f.shards[1]!.primaryUrl, 'orders', f.pools[1]!);
  const { reader, migration } = queued;
  try {
    const { result, millis } = await plannedDrain('shard1');
    console.log(JSON.stringify({ nullKeyCountRefusedAfterMillis: Math.round(millis) }));
    expect(result.status).toBe('refused');
    expect(result.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'table-locked', table: 'orders', shard: 'shard1', sqlState: '55P03' } });
    expect(result.error!.context.pids).toEqual(expect.arrayContaining([pidOf(migration), pidOf(reader)]));
    expect(result.error!.message).toMatch(new RegExp(`^The drain could not count the rows whose shard key is NULL on shard "shard1": table orders stayed locked for ${PLAN_LOCK_TIMEOUT_MILLIS} ms by `));
    expect(result.error!.message).toContain(`backend ${pidOf(migration)} "schema migration" active`);
    expect(result.error!.message).toContain('waiting for its lock on orders: "alter table orders add column note text default ?"');
    expect(result.error!.message).toContain(`backend ${pidOf(reader)} "report job" idle in transaction`);
    expect(result.error!.message).toContain('Nothing was changed.');
    expect(result.error!.message).not.toContain('Sekret');
    expect(millis).toBeGreaterThanOrEqual(PLAN_LOCK_TIMEOUT_MILLIS - 10);
    expect(millis).toBeLessThan(PLAN_LOCK_TIMEOUT_MILLIS + 5000);
    await queued.finish();
  } finally {
    await queued.close();
  }
  const { result } = await plannedDrain('shard1');
  expect(result).toMatchObject({ error: null, status: 'planned' });
}, 60_000);

test("an unsharded table's count on the holder behind a held ACCESS EXCLUSIVE lock: refused naming the table, the shard and the migration", async () => {
  const migration = await session(0, 'schema migration');
  try {
    await migration.query('begin');
    await migration.query('lock table countries in access exclusive mode');
    const { result, millis } = await plannedDrain('shard0');
    console.log(JSON.stringify({ unshardedCountRefusedAfterMillis: Math.round(millis) }));
    expect(result.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'table-locked', table: 'public.countries', shard: 'shard0', pids: [pidOf(migration)] } });
    expect(result.error!.message).toContain('The drain could not count the rows of the unsharded tables on shard "shard0": table public.countries stayed locked');
    expect(result.error!.message).toContain(`backend ${pidOf(migration)} "schema migration" idle in transaction`);
    expect(millis).toBeLessThan(PLAN_LOCK_TIMEOUT_MILLIS + 5000);
  } finally {
    await migration.query('rollback');
    await migration.end();
  }
  const { result } = await plannedDrain('shard0');
  expect(result).toMatchObject({ error: null, status: 'planned', plan: { unsharded: { source: 'shard0', target: 'shard1', tables: [{ name: 'public.countries', rows: 1 }] } } });
}, 60_000);
