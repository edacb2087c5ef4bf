/**
 * A shard that is slow but healthy is not taken for a silent one: past a deadline the mover probes
 * the session's backend from a fresh connection and lets work go on. Each case makes PostgreSQL
 * work longer than 1 s deadlines (statementTimeoutMillis and copyIdleTimeoutMillis both 1000) after
 * the mover sent its statement, with triggers calling pg_sleep, and the move completes, every row
 * in place:
 * - the target's AFTER ROW triggers, run at the end of its COPY after the last byte, and its
 *   deferred constraint trigger at the copy's commit;
 * - the catch-up's delete of a key on the target (an AFTER DELETE trigger), and its pipe's COPY end;
 * - the clean-up's delete of a key on the source.
 * With duration deadlines, each stopped the move with ShardSilentError, and resume failed the same way.
 * Two shards, no replicas; slots of shard0 move to shard1.
 */
import { slotOf } from '../../../src/cluster/slot-hash';
import type { Topology } from '../../../src/cluster/topology';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import type { HookPoint } from '../../../src/admin/mover/move-context';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { within } from './within-deadline';

const USERS = 4000;
const TUNING = { statementTimeoutMillis: 1000, copyIdleTimeoutMillis: 1000, niceRatio: 0, probeSlowMillis: 0, cleanupDelayMillis: 0 };
let f: MoverFixture;
let v1: Topology;

beforeAll(async () => {
  f = await startMoverFixture('mover_slow_work', 2);
  v1 = await f.init(2);
  await f.seed(v1, 0, USERS);
  for (const pool of f.pools) {
    await pool.query(`create function slow_row() returns trigger language plpgsql as $$ begin perform pg_sleep(tg_argv[0]::float8); return null; end $$`);
  }
}, 120_000);

afterAll(() => f?.close());

/** Users seeded in `from..to` slots (all on shard0 under v1). */
function usersIn(from: number, to: number): number[] {
  const out: number[] = [];
  for (let id = 0; id < USERS; id++) {
    const slot = slotOf(id);
    if (slot >= from && slot <= to) out.push(id);
  }
  expect(out.every((id) => v1.shardForSlot(slotOf(id)).id === 'shard0')).toBe(true);
  return out;
}

/** Moves `slots` from shard0 to shard1; the move must complete. Returns how long it took. */
async function moveCompletes(name: string, slots: string, hook?: (point: HookPoint) => Promise<void>): Promise<number> {
  const started = performance.now();
  const result = await within(90_000, name, moveSlots({ catalog: f.catalogUrl, to: 'shard1', slots, tables: TABLES, tuning: TUNING, ...(hook === undefined ? {} : { hook: (_batch, point) => hook(point) }) }));
  const tookMillis = Math.round(performance.now() - started);
  console.log(JSON.stringify({ [name]: { tookMillis, error: result.error?.message ?? null } }));
  expect(result.error).toBeNull();
  expect(result).toMatchObject({ ok: true, status: 'done' });
  expect(await verifyShards({ catalog: f.catalogUrl, tables: TABLES })).toMatchObject({ ok: true, misplaced: [], unplaceable: [], error: null });
  return tookMillis;
}

/** Rows of `ids` on shard `index`: users and orders. */
async function rowsOn(index: number, ids: readonly number[]): Promise<number> {
  const { rows } = await f.pools[index]!.query<{ n: number }>(
    'select ((select count(*) from users where id = any($1::bigint[])) + (select count(*) from orders where user_id = any($1::bigint[])))::int as n',
    [ids],
  );
  return rows[0]!.n;
}

test("the target's end-of-COPY work (AFTER ROW triggers) and its commit's deferred trigger, each longer than the deadlines: the move completes", async () => {
  const moved = usersIn(0, 511);
  const slow = moved.slice(0, 6); // 6 x 0.3 s after the COPY's last byte, and again at its commit
  const target = f.pools[1]!;
  await target.query(`create trigger slow_copy_end after insert on users for each row when (new.id = any('{${slow.join(',')}}'::bigint[])) execute function slow_row('0.3')`);
  await target.query(
    `create constraint trigger slow_commit after insert on orders deferrable initially deferred for each row when (new.user_id = any('{${slow.join(',')}}'::bigint[]) and new.id = 1) execute function slow_row('0.3')`,
  );
  try {
    const took = await moveCompletes('endOfCopyWork', '0-511');
    expect(took).toBeGreaterThan(3600); // the triggers' sleeps ran: the work really outlasted the deadlines
    expect(await rowsOn(1, moved)).toBe(moved.length * 3);
    expect(await rowsOn(0, moved)).toBe(0);
  } finally {
    await target.query('drop trigger slow_copy_end on users; drop trigger slow_commit on orders');
  }
}, 120_000);

test("the catch-up's delete of a key on the target and its pipe's COPY end, each longer than the statement deadline: the move completes", async () => {
  const moved = usersIn(512, 1023);
  const key = moved[0]!;
  const target = f.pools[1]!;
  // Only the catch-up's writes: the copy carried score 0; the key is updated once the copy is done.
  await target.query(`create trigger slow_catchup_delete after delete on users for each row when (old.id = ${key}) execute function slow_row('1.5')`);
  await target.query(`create trigger slow_catchup_pipe after insert on users for each row when (new.id = ${key} and new.score = 1) execute function slow_row('1.5')`);
  let updated = false;
  try {
    const took = await moveCompletes('catchUpWork', '512-1023', async (point) => {
      if (point !== 'copied' || updated) return;
      updated = true;
      await f.pools[0]!.query('update users set score = 1 where id = $1', [key]);
    });
    expect(updated).toBe(true);
    expect(took).toBeGreaterThan(3000); // both sleeps ran
    const { rows } = await target.query<{ score: number }>('select score from users where id = $1', [key]);
    expect(rows).toEqual([{ score: 1 }]);
    expect(await rowsOn(1, moved)).toBe(moved.length * 3);
  } finally {
    await target.query('drop trigger slow_catchup_delete on users; drop trigger slow_catchup_pipe on users');
  }
}, 120_000);

test("the clean-up's delete of a key on the source, longer than the statement deadline: the move completes", async () => {
  const moved = usersIn(1024, 1535);
  const source = f.pools[0]!;
  await source.query(`create trigger slow_cleanup after delete on users for each row when (old.id = ${moved[0]!}) execute function slow_row('2')`);
  try {
    expect(await moveCompletes('cleanUpWork', '1024-1535')).toBeGreaterThan(2000); // the sleep ran
    expect(await rowsOn(0, moved)).toBe(0);
    expect(await rowsOn(1, moved)).toBe(moved.length * 3);
  } finally {
    await source.query('drop trigger slow_cleanup on users');
  }
}, 120_000);
