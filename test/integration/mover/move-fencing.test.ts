import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { slotOf } from '../../../src/cluster/slot-hash';
import { SLOT_FENCED_SQLSTATE, STALE_TOPOLOGY_SQLSTATE, fenceRefusalOf } from '../../../src/cluster/topology-fence';
import type { HookPoint } from '../../../src/admin/mover/move-context';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_fencing', 2);
}, 60_000);

afterAll(() => f?.close());

/** An app-role session on shard `i` routing by `version` (undefined: an unversioned session). */
async function appSession(i: number, version: number | undefined): Promise<Client> {
  const client = directClient({ connectionString: f.appUrl(i), ...(version === undefined ? {} : { options: `-c kysely_scale.topology_version=${version}` }) });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => undefined,
    (error: { code?: string }) => error.code,
  );
}

test('during a move scatter counts stay exact on every phase, writes to fenced slots are refused, and afterwards stale sessions are refused on both shards', async () => {
  const v1 = await f.init(2);
  await f.seed(v1, 0, 300);
  const moving = new Set(Array.from({ length: 256 }, (_, i) => i));
  const movingUser = [...Array(300).keys()].find((id) => moving.has(slotOf(id)))!;
  const otherUser = [...Array(300).keys()].find((id) => !moving.has(slotOf(id)) && v1.shardForSlot(slotOf(id)).id === 'shard0')!;
  const sessions = [await appSession(0, 1), await appSession(1, 1)];
  const current = [await appSession(0, 2), await appSession(1, 2)];
  const counts: Record<string, number | string> = {};
  const fenced: Record<string, string | undefined> = {};
  const straddle: { source?: number; target?: string } = {};
  const hook = async (_batch: unknown, point: HookPoint): Promise<void> => {
    // A version-1 scatter count over both shards: copies on the target must stay invisible; once the
    // source switched, version 1 is refused instead.
    const parts = await Promise.allSettled(sessions.map((s) => s.query<{ n: string }>('select count(*) as n from users')));
    const refused = parts.find((p): p is PromiseRejectedResult => p.status === 'rejected');
    counts[point] = refused !== undefined ? (refused.reason as { code: string }).code : parts.reduce((n, r) => n + Number((r as PromiseFulfilledResult<{ rows: { n: string }[] }>).value.rows[0]!.n), 0);
    if (point === 'published' || point === 'cleaning') {
      const v2 = await Promise.all(current.map((s) => s.query<{ n: string }>('select count(*) as n from users')));
      counts[`${point} v2`] = v2.reduce((n, r) => n + Number(r.rows[0]!.n), 0);
    }
    // A version-1 scatter whose parts straddle the cutover (one statement per shard, each with its
    // own snapshot): the source's part before the switch, the target's after the target showed the
    // slots. The target must refuse its part, or the moved rows would be counted twice.
    if (point === 'fenced') straddle.source = Number((await sessions[0]!.query<{ n: string }>('select count(*) as n from users')).rows[0]!.n);
    if (point === 'published') straddle.target = await sessions[1]!.query('select count(*) from users').then(() => 'answered', (e: { code?: string }) => e.code);
    if (point === 'fenced') {
      fenced.moving = await codeOf(sessions[0]!.query('update users set score = score + 1 where id = $1', [movingUser]));
      fenced.other = await codeOf(sessions[0]!.query('update users set score = score + 1 where id = $1', [otherUser]));
    }
  };
  const result = await moveSlots({ catalog: f.catalogUrl, tables: TABLES, slots: '0-255', to: 'shard1', hook });
  expect(result.error).toBeNull();
  expect(counts).toEqual({ planned: 300, capturing: 300, copied: 300, 'caught-up': 300, claiming: 300, fencing: 300, fenced: 300, switched: STALE_TOPOLOGY_SQLSTATE, showing: STALE_TOPOLOGY_SQLSTATE, publishing: STALE_TOPOLOGY_SQLSTATE, published: STALE_TOPOLOGY_SQLSTATE, 'published v2': 300, cleaning: STALE_TOPOLOGY_SQLSTATE, 'cleaning v2': 300 });
  expect(fenced).toEqual({ moving: SLOT_FENCED_SQLSTATE, other: undefined });
  expect(straddle).toEqual({ source: expect.any(Number), target: STALE_TOPOLOGY_SQLSTATE });

  // After the cutover: version-1 sessions are refused on the source and on the target, reads and writes alike.
  const stale = await codeOf(sessions[0]!.query('select * from users where id = $1', [movingUser]));
  expect(stale).toBe(STALE_TOPOLOGY_SQLSTATE);
  expect(await codeOf(sessions[1]!.query('select count(*) from users'))).toBe(STALE_TOPOLOGY_SQLSTATE);
  expect(await codeOf(sessions[0]!.query(`insert into users (id, name) values (100000, 'x')`))).toBe(STALE_TOPOLOGY_SQLSTATE);
  const refusal = await sessions[0]!.query('select 1 from users').catch((e: unknown) => fenceRefusalOf(e));
  expect(refusal).toEqual({ kind: 'stale', requiredVersion: 2, slot: undefined });
  // Version-2 sessions find the moved user on the target only.
  const fresh = [await appSession(0, 2), await appSession(1, 2)];
  expect((await fresh[0]!.query('select * from users where id = $1', [movingUser])).rows).toHaveLength(0);
  expect((await fresh[1]!.query('select * from users where id = $1', [movingUser])).rows).toHaveLength(1);
  const total = await Promise.all(fresh.map((s) => s.query<{ n: string }>('select count(*) as n from users')));
  expect(total.reduce((n, r) => n + Number(r.rows[0]!.n), 0)).toBe(300);
  for (const s of [...sessions, ...fresh, ...current]) await s.end();
});
