import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { to as copyTo } from 'pg-copy-streams';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { SLOT_FUNCTIONS_SQL } from '../../../src/cluster/slot-function-sql';
import { SlotLines, slotSet, unescapeCopyText } from '../../../src/admin/mover/slot-lines';
import { slotOfTextSql } from '../../../src/admin/mover/shard-guard-sql';

// The mover picks rows by slot from COPY text in Node; PostgreSQL's SQL twin decides what the guard hides. They must agree on every key.
let cluster: TestCluster;
let client: Client;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('slot_lines_parity');
  client = directClient(shard!.primaryUrl);
  await client.connect();
  await client.query(SLOT_FUNCTIONS_SQL);
  await client.query('create table keys (k text primary key, v int)');
  const tricky = ['plain', 'tab\there', 'new\nline', 'back\\slash', 'cr\rlf', 'été ünïcode', '0F8FAD5B-D9CB-469F-A165-70867728950E', '0f8fad5b-d9cb-469f-a165-70867728950e', 'ABCDEF', ' spaced ', '\\N', ''];
  const keys = [...tricky, ...Array.from({ length: 300 }, (_, i) => `key-${i}`)];
  await client.query('insert into keys select k, 1 from unnest($1::text[]) k', [keys]);
}, 60_000);

afterAll(async () => {
  await client?.end();
  await cluster?.stop();
});

test('every key COPY streams gets the slot the SQL twin gives it, and comes back as the same text', async () => {
  const { rows } = await client.query<{ k: string; slot: number }>('select k, kysely_scale_slot(k, 64) as slot from keys');
  const expected = new Map(rows.map((r) => [r.k, r.slot]));
  const seen = new Map<string, number>();
  const lines = new SlotLines({ slots: slotSet(undefined, 64), slotCount: 64, forward: false, onRow: (slot, key) => seen.set(unescapeCopyText(key.toString('utf8')), slot) });
  await pipeline(client.query(copyTo('copy (select k, v from keys) to stdout')), lines, new Writable({ write: (_c, _e, cb) => cb() }));
  expect(seen.size).toBe(expected.size);
  expect(new Map([...seen].sort())).toEqual(new Map([...expected].sort()));
});

test('the slot expression of the capture trigger and the hidden-slot policy is the SQL twin, written out', async () => {
  const { rows } = await client.query<{ k: string; twin: number; written: number }>(`select k, kysely_scale_slot(k, 4096) as twin, ${slotOfTextSql('k', '4096')} as written from keys`);
  expect(rows.length).toBeGreaterThan(300);
  expect(rows.filter((r) => r.twin !== r.written)).toEqual([]);
  const { rows: nulls } = await client.query<{ written: number | null }>(`select ${slotOfTextSql('null::text', '4096')} as written`);
  expect(nulls[0]!.written).toBeNull();
});

test('the slot expression and the twin work under a session search_path that leaves out public (an app role may set its own)', async () => {
  await client.query('begin');
  try {
    await client.query('set local search_path = pg_catalog');
    const { rows } = await client.query<{ written: number; text: number; big: number; id: number }>(
      `select ${slotOfTextSql(`'user-42'::text`, '4096')} as written, public.kysely_scale_slot('user-42'::text, 4096) as text,
              public.kysely_scale_slot(42::bigint, 4096) as big, public.kysely_scale_slot('42'::text, 4096) as id`,
    );
    expect(rows[0]!.written).toBe(rows[0]!.text);
    expect(rows[0]!.big).toBe(rows[0]!.id);
  } finally {
    await client.query('rollback');
  }
});
