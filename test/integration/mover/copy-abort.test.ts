/**
 * A scan that fails partway never leaves its session stuck. pg-copy-streams' COPY reader has no
 * destroy handling, so a stage failing after the stream started (a probe error, a parse error)
 * used to leave the client waiting for the rest of the COPY forever: the next statement (the
 * rollback of the repeatable-read snapshot the scan ran in) never returned while the backend held
 * the snapshot. Now the session is dropped: later statements fail at once, and the move's context
 * opens a new session in its place.
 */
import { Transform } from 'node:stream';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { slotChecksums, discard } from '../../../src/admin/mover/slot-checksum';
import { copyOut } from '../../../src/admin/mover/copy-out';
import { openShardSession, rollbackOrDrop, type ShardSession } from '../../../src/admin/mover/shard-session';
import { MoveContext, MOVE_TUNING_DEFAULTS } from '../../../src/admin/mover/move-context';
import type { TopologyCatalog } from '../../../src/admin/topology-catalog';
import type { MoveStore } from '../../../src/admin/mover/move-store';
import type { MoveRecord } from '../../../src/admin/mover/move-record';
import { createTopology } from '../../../src/cluster/topology';
import { systemClock } from '../../../src/kernel/clock';
import type { KeyedTable } from '../../../src/admin/mover/table-keys';

let cluster: TestCluster;
let url: string;
const sessions: ShardSession[] = [];
// Enough rows that the COPY fills the socket buffers long before it ends.
const users: KeyedTable = { name: 'users', keyColumn: 'id', keyType: 'bigint' } as KeyedTable;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('copy_abort');
  url = shard!.primaryUrl;
  const admin = directClient(url);
  await admin.connect();
  await admin.query('create table users (id bigint primary key, name text)');
  await admin.query(`insert into users select g, repeat('x', 100) from generate_series(1, 200000) g`);
  await admin.end();
}, 60_000);

afterAll(async () => {
  for (const s of sessions) s.destroy();
  await cluster?.stop();
});

async function snapshotSession(): Promise<ShardSession> {
  const session = await openShardSession(url, 5000);
  sessions.push(session);
  await session.client.query('begin isolation level repeatable read');
  return session;
}

/** How `promise` settled, or 'still waiting' once `millis` passed (the old code waited forever). */
function settled(promise: Promise<unknown>, millis: number): Promise<'resolved' | 'rejected' | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still waiting'>((resolve) => (timer = setTimeout(() => resolve('still waiting'), millis)));
  return Promise.race([promise.then(() => 'resolved' as const, () => 'rejected' as const), late]).finally(() => clearTimeout(timer));
}

test('a paced checksum scan whose probe fails mid-stream rejects, and its session answers (by failing) at once', async () => {
  const { client } = await snapshotSession();
  const refused = Object.assign(new Error('sorry, too many clients already'), { code: '53300' });
  const pace = { clock: systemClock, niceRatio: 0, sliceMillis: 0, probeSlowMillis: 3, probe: () => Promise.reject(refused) };
  await expect(slotChecksums(client, users, undefined, 4096, { pace, inTransaction: true })).rejects.toBe(refused);
  expect(await settled(client.query('rollback'), 3000)).toBe('rejected');
});

test('a transform failing mid-stream drops the session; rollbackOrDrop returns; the context opens a new session', async () => {
  const topology = createTopology({ shards: [{ id: 'shard0', primary: url, replicas: [] }] });
  const ctx = new MoveContext({} as TopologyCatalog, {} as MoveStore, { id: 1 } as MoveRecord, MOVE_TUNING_DEFAULTS, systemClock, () => undefined, undefined, new AbortController().signal);
  try {
    const client = await ctx.session('shard0', topology);
    await client.query('begin isolation level repeatable read');
    let chunks = 0;
    const failing = new Transform({ transform: (chunk, _e, cb) => (++chunks === 2 ? cb(new Error('bad line')) : cb(null, chunk)) });
    await expect(copyOut(client, 'copy (select id, name from users) to stdout', [failing, discard()])).rejects.toThrow('bad line');
    expect(await settled(rollbackOrDrop(client, systemClock), 3000)).toBe('resolved');
    const next = await ctx.session('shard0', topology);
    expect(next).not.toBe(client);
    expect((await next.query<{ one: number }>('select 1 as one')).rows).toEqual([{ one: 1 }]);
  } finally {
    await ctx.close();
  }
});
