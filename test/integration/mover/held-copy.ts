/**
 * Holding a mover's COPY into a target at one row, for tests that lose the operator lock while the
 * COPY streams: a trigger on the target sleeps at that row until it gets an advisory lock the test
 * holds (its backend at work, not waiting on a lock, as a slow target is), so the stream is
 * certainly under way when the lock goes.
 */
import type { Pool } from 'pg';
import { directClient, type directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';
import { endLockSession } from './lock-takeover';
import { expectBackendGone } from './within-deadline';
import { startSeededMover, type SeededMover } from './seeded-mover';
import { latestTopology } from './served-rows';
import { slotOf } from '../../../src/cluster/slot-hash';

/** A trigger `hold_<table>` holding an insert into `table` where `condition` (SQL on `new`) until advisory lock `key` is free; `always`, so it fires under `session_replication_role = replica` too. */
export function holdTriggerSql(table: string, condition: string, key: number): string {
  return `
    create function hold_${table}() returns trigger language plpgsql as $$
    begin
      if ${condition} then
        while not pg_try_advisory_xact_lock_shared(${key}) loop perform pg_sleep(0.01); end loop;
      end if;
      return new;
    end $$;
    create trigger hold_${table} before insert on ${table} for each row execute function hold_${table}();
    alter table ${table} enable always trigger hold_${table}`;
}

/** Runs `fn` holding advisory lock `key` on a session of its own of `url` (ended afterwards, the lock with it); `release` lets it go earlier. */
export async function holdingCopies<T>(url: string, key: number, fn: (release: () => Promise<void>) => Promise<T>): Promise<T> {
  const client = directClient({ connectionString: url });
  await client.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [key]);
    let released = false;
    return await fn(async () => {
      if (released) return;
      released = true;
      await client.query('select pg_advisory_unlock($1)', [key]);
    });
  } finally {
    await client.end();
  }
}

/** What {@link loseLockWhileHeld} watches. */
export interface HeldCopy {
  readonly catalogPool: ReturnType<typeof directPool>;
  /** The shard the mover copies out of, and the statement of its COPY there (a `like` pattern). */
  readonly source: { readonly pool: Pool; readonly url: string; readonly copy: string };
  /** The shard whose COPY in is held. */
  readonly target: Pool;
  readonly release: () => Promise<void>;
}

/**
 * Once the mover's COPY into the target is held, ends the operator lock's catalog session and
 * waits until the mover's COPY out of the source ended (its backend gone); returns how long that
 * took after the lock's session was ended. The hold is released afterwards, however it went.
 */
export async function loseLockWhileHeld(held: HeldCopy): Promise<number> {
  try {
    await until('a mover COPY held on the target', async () => (await held.target.query(`select 1 from pg_stat_activity where application_name = 'kysely-scale mover' and datname = current_database() and wait_event = 'PgSleep'`)).rowCount! > 0, 20_000);
    const { rows } = await held.source.pool.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = 'kysely-scale mover' and datname = current_database() and query like $1`, [held.source.copy]);
    expect(rows).toHaveLength(1);
    const started = performance.now();
    await endLockSession(held.catalogPool);
    await expectBackendGone(held.source.url, rows[0]!.pid);
    return Math.round(performance.now() - started);
  } finally {
    await held.release();
  }
}

/** The key of {@link startManyRowsKey}: its user has {@link MANY_ROWS} orders. */
export const MANY_ROWS_KEY = 7;
export const MANY_ROWS = 50_000;

/**
 * A seeded mover of two shards (32 slots, no users) where user {@link MANY_ROWS_KEY} has
 * {@link MANY_ROWS} orders on its owner (`from`), and the other shard (`to`) holds the insert of
 * its order changed to amount -1 until advisory lock `holdLock` is free ({@link holdTriggerSql}).
 */
export async function startManyRowsKey(name: string, holdLock: number): Promise<SeededMover & { readonly from: number; readonly to: number; readonly slot: number }> {
  const seeded = await startSeededMover(name, { slotCount: 32, users: 0, catalogConnections: 2 });
  const { f } = seeded;
  const slot = slotOf(MANY_ROWS_KEY, 32);
  const v1 = await latestTopology(f.catalogUrl);
  const from = f.shards.findIndex((s) => s.id === v1.shardForSlot(slot).id);
  const to = 1 - from;
  await f.pools[from]!.query(`insert into users (id, name) values (${MANY_ROWS_KEY}, 'many orders')`);
  await f.pools[from]!.query(`insert into orders (user_id, id, amount) select ${MANY_ROWS_KEY}, n, n from generate_series(1, ${MANY_ROWS}) n`);
  await f.pools[to]!.query(holdTriggerSql('orders', `new.user_id = ${MANY_ROWS_KEY} and new.amount = -1`, holdLock));
  return { ...seeded, from, to, slot };
}
