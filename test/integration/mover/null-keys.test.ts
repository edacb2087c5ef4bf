/**
 * Rows whose shard key is NULL belong to no slot: no keyed read finds them and no move takes them.
 * `verify` reports them (and is not ok), and `drain` refuses a shard holding some, since removing
 * it would leave them behind; nothing changes in the catalog.
 */
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { ErrorCodes } from '../../../src/kernel/errors';

let f: MoverFixture;
const tables = { ...TABLES, notes: 'owner' };

beforeAll(async () => {
  f = await startMoverFixture('mover_null_keys', 2);
  for (const pool of f.pools) await pool.query('create table notes (owner bigint, body text)');
  const topology = await f.init(2);
  await f.seed(topology, 0, 40);
  // Written around the router (which refuses NULL keys): one note without an owner on shard1.
  await f.pools[1]!.query(`insert into notes (owner, body) values (null, 'orphan'), (null, 'orphan 2')`);
}, 60_000);

afterAll(() => f?.close());

test('verify names the rows with a NULL shard key, per table and shard, and is not ok', async () => {
  const result = await verifyShards({ catalog: f.catalogUrl, tables });
  expect(result.error).toBeNull();
  expect(result.misplaced).toEqual([]);
  expect(result.unplaceable).toEqual([{ table: 'notes', shard: f.shards[1]!.id, rows: 2 }]);
  expect(result.ok).toBe(false);
});

test('drain refuses the shard holding them before anything changes; once they have keys it is allowed to start', async () => {
  const result = await drainShard({ catalog: f.catalogUrl, tables, shardId: f.shards[1]!.id });
  expect(result).toMatchObject({ ok: false, status: 'refused', moveId: null, error: { code: ErrorCodes.MOVE_REFUSED, context: { reason: 'null-keys', tables: ['notes'] } } });
  expect(result.error!.message).toContain('notes: 2');
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  try {
    expect((await catalog.latest())!.version).toBe(1);
  } finally {
    await catalog.close();
  }
  await f.pools[1]!.query(`delete from notes where owner is null`);
  expect((await verifyShards({ catalog: f.catalogUrl, tables })).ok).toBe(true);
});
