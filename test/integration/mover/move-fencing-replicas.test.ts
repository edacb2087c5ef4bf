import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startMoverFixture, APP_ROLE, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { slotOf } from '../../../src/cluster/slot-hash';
import type { HookPoint } from '../../../src/admin/mover/move-context';
import { eventually, waitForReplay, withPg } from '../../support/postgres-replication';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_fencing_replicas', 2, 1);
}, 60_000);

afterAll(() => f?.close());

async function connect(url: string, version?: number): Promise<Client> {
  const u = new URL(url);
  if (version !== undefined) u.username = APP_ROLE;
  const c = directClient({ connectionString: u.toString(), ...(version === undefined ? {} : { options: `-c kysely_scale.topology_version=${version}` }) });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

const count = (c: Client): Promise<number | string> => c.query<{ n: string }>('select count(*) as n from users').then((r) => Number(r.rows[0]!.n), (e: { code?: string }) => String(e.code));

test("an older router's scatter over the replicas is refused by the target's replica once it shows the moved slots, while the source's replica has not replayed the switch (no double count)", async () => {
  const v1 = await f.init(2);
  await f.seed(v1, 0, 300);
  for (const s of f.shards) await waitForReplay(s.primaryUrl, s.replicaUrls[0]!);
  const sourceReplicaAdmin = await connect(f.shards[0]!.replicaUrls[0]!);
  const [r0, r1] = [await connect(f.shards[0]!.replicaUrls[0]!, 1), await connect(f.shards[1]!.replicaUrls[0]!, 1)];
  let observed: Promise<(number | string)[]> | undefined;
  const hook = async (_batch: unknown, point: HookPoint): Promise<void> => {
    if (point === 'fenced') await sourceReplicaAdmin.query('select pg_wal_replay_pause()');
    if (point !== 'switched') return;
    // In the background: the mover now shows the slots on the target and waits for both replicas.
    observed = (async () => {
      await eventually('the target showing the moved slots', () => withPg(f.shards[1]!.primaryUrl, async (c) => (await c.query('select required_version >= 2 as p from kysely_scale.shard_guard')).rows[0].p === true));
      await waitForReplay(f.shards[1]!.primaryUrl, f.shards[1]!.replicaUrls[0]!);
      const counts = [await count(r0), await count(r1)];
      await sourceReplicaAdmin.query('select pg_wal_replay_resume()');
      return counts;
    })();
  };
  const result = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '0-255', to: 'shard1', hook, tuning: { replicaWaitMillis: 15_000 } });
  expect(result.error).toBeNull();
  const [source, target] = (await observed)!;
  // The source's replica still serves version 1 with the moved rows; the target's refuses version 1.
  const ownedByTarget = [...Array(300).keys()].filter((id) => v1.shardForSlot(slotOf(id)).id === 'shard1').length;
  expect({ source, target }).toEqual({ source: 300 - ownedByTarget, target: 'KS001' });
  for (const c of [sourceReplicaAdmin, r0, r1]) await c.end();
}, 60_000);
