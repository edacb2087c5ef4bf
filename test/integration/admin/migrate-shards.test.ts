import { join } from 'node:path';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { migrateShards, type ShardTarget } from '../../../src/admin/shard-migrations';
import { slotOf } from '../../../src/cluster/slot-hash';
import { ErrorCodes } from '../../../src/kernel/errors';

// Three shards, each its own database per test so the tests share one cluster without sharing tables.
const migrationFolder = join(__dirname, 'migrations');
const ALL = ['0001_users', '0002_accounts', '0003_orders'];
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 3 });
}, 60_000);

afterAll(() => cluster?.stop());

async function shardsOf(database: string): Promise<ShardTarget[]> {
  const urls: readonly TestShardUrls[] = await cluster.createDatabase(database);
  return urls.map((s) => ({ id: s.id, url: s.primaryUrl }));
}

async function query<R extends Record<string, unknown>>(url: string, text: string): Promise<R[]> {
  const client = directClient({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

const tableExists = async (url: string, table: string): Promise<boolean> =>
  (await query<{ found: boolean }>(url, `select to_regclass('${table}') is not null as found`))[0]!.found;

describe('migrateShards', () => {
  test('runs Kysely migrations on every shard, each keeping its own migration table, after installing the slot functions', async () => {
    const shards = await shardsOf('mig_all');
    const outcome = await migrateShards({ shards, migrationFolder });
    expect(outcome.error).toBeUndefined();
    expect(outcome.shards.map((s) => [s.shardId, s.status, s.current, s.pending])).toEqual(shards.map((s) => [s.id, 'migrated', '0003_orders', []]));
    for (const s of outcome.shards) expect(s.results?.map((r) => [r.migrationName, r.status])).toEqual(ALL.map((name) => [name, 'Success']));
    for (const shard of shards) {
      expect((await query<{ name: string }>(shard.url, 'select name from kysely_migration order by name')).map((r) => r.name)).toEqual(ALL);
      expect((await query<{ slot: number }>(shard.url, "select kysely_scale_slot('42') as slot"))[0]!.slot).toBe(slotOf(42));
    }

    const again = await migrateShards({ shards, migrationFolder });
    expect(again.error).toBeUndefined();
    expect(again.shards.map((s) => [s.status, s.results])).toEqual(shards.map(() => ['migrated', []]));
  }, 60_000);

  test('a migration failing on one shard stops the run there and reports where every shard stands', async () => {
    const shards = await shardsOf('mig_fail');
    await query(shards[1]!.url, 'create table accounts (id int)'); // 0002_accounts will collide on shard1 only

    const outcome = await migrateShards({ shards, migrationFolder });
    expect(outcome.failedShard).toBe('shard1');
    expect((outcome.error as { code?: string }).code).toBe('42P07'); // pg's own error, fields kept
    const [first, failed, skipped] = outcome.shards;
    expect(first).toMatchObject({ shardId: 'shard0', status: 'migrated', current: '0003_orders', pending: [] });
    expect(failed).toMatchObject({ shardId: 'shard1', status: 'failed', current: null, pending: ALL });
    expect(failed!.error).toBe(outcome.error);
    expect(failed!.results?.map((r) => r.status)).toEqual(['Success', 'Error', 'NotExecuted']);
    expect(skipped).toMatchObject({ shardId: 'shard2', status: 'skipped', current: null, pending: ALL });
    // Kysely ran shard1's migrations in one transaction: 0001 was rolled back; shard2 was not touched.
    expect(await tableExists(shards[1]!.url, 'users')).toBe(false);
    expect(await tableExists(shards[2]!.url, 'users')).toBe(false);
    expect(await tableExists(shards[2]!.url, 'kysely_migration')).toBe(false);

    await query(shards[1]!.url, 'drop table accounts');
    const resumed = await migrateShards({ shards, migrationFolder });
    expect(resumed.error).toBeUndefined();
    expect(resumed.shards.map((s) => [s.status, s.current, s.results?.length])).toEqual([
      ['migrated', '0003_orders', 0],
      ['migrated', '0003_orders', 3],
      ['migrated', '0003_orders', 3],
    ]);
  }, 60_000);

  test('`to` migrates every shard up or down to a named migration', async () => {
    const shards = await shardsOf('mig_to');
    const up = await migrateShards({ shards, migrationFolder, to: '0002_accounts' });
    expect(up.shards.map((s) => [s.status, s.current, s.pending])).toEqual(shards.map(() => ['migrated', '0002_accounts', ['0003_orders']]));
    const down = await migrateShards({ shards, migrationFolder, to: '0001_users' });
    expect(down.error).toBeUndefined();
    expect(down.shards.map((s) => [s.current, s.results?.map((r) => [r.migrationName, r.direction])])).toEqual(shards.map(() => ['0001_users', [['0002_accounts', 'Down']]]));
    for (const shard of shards) expect(await tableExists(shard.url, 'accounts')).toBe(false);
  }, 60_000);

  test('a shard that cannot be reached fails with its id and server named, password hidden, pg fields kept; later shards are skipped', async () => {
    const [shard0] = await shardsOf('mig_unreachable');
    const gone = { id: 'gone', url: 'postgres://app:Sup3rSecret@127.0.0.1:1/app' };
    const outcome = await migrateShards({ shards: [gone, shard0!], migrationFolder, connectionTimeoutMillis: 2000 });
    expect(outcome.failedShard).toBe('gone');
    const error = outcome.error as Error & { code?: string };
    expect(error.code).toBe('ECONNREFUSED');
    expect(error.message).toContain('gone primary postgres://app:***@127.0.0.1:1/app');
    expect(error.message).not.toContain('Sup3rSecret');
    expect(outcome.shards.map((s) => [s.shardId, s.status, s.server])).toEqual([
      ['gone', 'failed', 'postgres://app:***@127.0.0.1:1/app'],
      ['shard0', 'skipped', shard0!.url],
    ]);
  }, 60_000);

  test('invalid options are returned as the result error, not thrown', async () => {
    const noShards = await migrateShards({ shards: [], migrationFolder });
    expect(noShards).toMatchObject({ shards: [], error: { code: ErrorCodes.INVALID_CONFIG } });
    const both = await migrateShards({ shards: [{ id: 'a', url: 'postgres://127.0.0.1:1/a' }], migrationFolder, provider: { getMigrations: async () => ({}) } });
    expect((both.error as Error).message).toMatch(/`provider`/);
  });
});
