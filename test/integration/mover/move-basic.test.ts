import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { slotOf } from '../../../src/cluster/slot-hash';
import { directPool } from '../../support/direct-pool';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_basic', 2, 1);
}, 60_000);

afterAll(() => f?.close());

test('moving slots copies their rows to the target, publishes the new owner once its replica replayed them, and leaves no row behind', async () => {
  const v1 = await f.init(2);
  // Enough rows that the clean-up deletes the moved keys in several chunks of changing size.
  await f.seed(v1, 0, 2000);
  const before = await verifyShards({ catalog: f.catalogUrl, tables: TABLES });
  expect(before.ok).toBe(true);
  const result = await moveSlots({ catalog: f.catalogUrl, slots: '0-511', to: 'shard1' });
  expect(result.error).toBeNull();
  expect(result).toMatchObject({ ok: true, status: 'done', versions: [2] });
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  const latest = (await catalog.latest())!;
  await catalog.close();
  expect(latest.slotsOf('shard1')).toHaveLength(2048 + 512);
  const after = await verifyShards({ catalog: f.catalogUrl });
  expect(after.ok).toBe(true);
  expect(after.slots).toEqual(before.slots);
  const users = await f.rowsOf('users');
  expect(users).toHaveLength(2000);
  for (const u of users) expect(latest.shardForSlot(slotOf(BigInt(u.key))).index).toBe(u.shard);
  // The new owner's replica had replayed the moved rows before the version was published.
  const replica = directPool({ connectionString: f.shards[1]!.replicaUrls[0]!, max: 1 });
  const onReplica = Number((await replica.query('select count(*) as n from users')).rows[0].n);
  await replica.end();
  expect(onReplica).toBe(users.filter((u) => u.shard === 1).length);
});
