/** Installs the guard objects of {@link shardGuardSql} and {@link tableGuardSql} on a shard, only where missing. */
import type { Client } from 'pg';
import { SLOT_FUNCTIONS_SQL } from '../../cluster/slot-function-sql';
import { ddlLockFailure, type DdlTarget } from './ddl-lock-failure';
import { IDENTITY_SQL_EXPRESSION, writeReplicaIdentity } from '../../replication/replica-identity';
import { captureTriggerSql, dropCaptureSql, quoteTable, shardGuardSql, tableGuardSql, type ShardedTableSpec } from './shard-guard-sql';
import { sessionClock } from './shard-deadlines';
import { beginChecked, MOVER_EPOCH_SQL } from './mover-epoch';

/**
 * Runs DDL with a short lock timeout, retrying with a pause when the table stays busy. A DDL lock
 * request queues every later writer of the table behind it while it waits, so the wait is what app
 * writes pause: {@link DDL_FIRST_LOCK_TIMEOUT_MILLIS} at the first attempt (app transactions are
 * short: the lock is usually free within a few milliseconds), then longer at each attempt up to
 * {@link DDL_LOCK_TIMEOUT_MILLIS}, so long transactions do not starve it; the pause between
 * attempts lets the queued writers through. After `attempts` it fails with a `MoveFailedError`
 * naming the shard and the backends holding `target`'s tables ({@link ddlLockFailure}). Timed on
 * the session's clock; each statement under the session's deadline (`shard-deadlines.ts`). A
 * session of a move checks its command's epoch at the transaction's start (`mover-epoch.ts`).
 */
export async function runDdl(client: Client, sql: string, target: DdlTarget, attempts = 100): Promise<void> {
  const clock = sessionClock(client);
  const started = clock.monotonicNow();
  for (let attempt = 1; ; attempt++) {
    await beginChecked(client);
    try {
      await client.query(`set local lock_timeout = '${Math.min(DDL_FIRST_LOCK_TIMEOUT_MILLIS * attempt, DDL_LOCK_TIMEOUT_MILLIS)}ms'`);
      await client.query(sql);
      await client.query('commit');
      return;
    } catch (error) {
      await client.query('rollback').catch(() => undefined);
      if ((error as { code?: unknown }).code !== '55P03') throw error;
      if (attempt >= attempts) throw await ddlLockFailure(client, target, attempts, clock.monotonicNow() - started, error);
    }
    await new Promise<void>((resolve) => clock.setTimeout(resolve, DDL_RETRY_PAUSE_MILLIS * Math.min(attempt, 5)));
  }
}

/** How long a DDL statement of the mover may wait for its table's lock (and so hold up writers queued behind it), at most. */
export const DDL_LOCK_TIMEOUT_MILLIS = 20;
/** The same at the first attempt (then this much more at each attempt, up to {@link DDL_LOCK_TIMEOUT_MILLIS}). */
export const DDL_FIRST_LOCK_TIMEOUT_MILLIS = 5;
const DDL_RETRY_PAUSE_MILLIS = 10;

/** Installs the slot function twin, the shard guard, every table's policy and write gate, and the replica identity (idempotent; DDL only where missing). */
export async function installGuard(client: Client, shardId: string, tables: readonly ShardedTableSpec[], slotCount: number): Promise<void> {
  // The replica identity too: the operator's role may create it where the app's usually may not
  // (replicas would stay unverified). Written only when missing: its GRANTs rewrite catalog rows,
  // which makes every app session of the shard reload its caches.
  const { rows: identity } = await client.query<{ value: string | null }>(`select ${IDENTITY_SQL_EXPRESSION} as value`);
  if (identity[0]?.value == null) {
    // A dialect's first check may create it at the same moment: its row is as good as ours.
    await writeReplicaIdentity(client, shardId).catch((error: unknown) => {
      if (!['23505', '42P07', '42710'].includes(String((error as { code?: unknown }).code))) throw error;
    });
  }
  // A murmur3 installed by an earlier version (a loop of helper calls, with a SET clause) is replaced
  // by the faster one, and a write gate that does not warm the slot hash up by one that does.
  const { rows } = await client.query<{ ok: boolean; epoch: boolean }>(
    `select to_regproc('kysely_scale.version_gate') is not null
        and coalesce((select proconfig is null from pg_proc where oid = to_regproc('public.kysely_scale_murmur3')), false)
        and coalesce((select prosrc like '%has_function_privilege%' from pg_proc where oid = to_regproc('kysely_scale.write_gate')), false) as ok,
            to_regprocedure('kysely_scale.check_mover_epoch(bigint, text)') is not null as epoch`,
  );
  if (rows[0]?.ok !== true) {
    await runDdl(client, SLOT_FUNCTIONS_SQL, { purpose: 'install the slot functions', tables: [] });
    await runDdl(client, shardGuardSql(shardId), { purpose: 'install the shard guard', tables: [] });
  } else {
    await client.query(`update kysely_scale.shard_guard set shard_id = $1 where shard_id <> $1`, [shardId]);
  }
  // The mover's fencing token (mover-epoch.ts), on shards guarded before it existed too.
  if (rows[0]?.epoch !== true) await runDdl(client, MOVER_EPOCH_SQL, { purpose: 'install the mover epoch', tables: [] });
  for (const table of tables) {
    const { rows: present } = await client.query<{ n: number }>(
      `select (select count(*) from pg_policy where polrelid = to_regclass($1) and polname in ('kysely_scale_guard', 'kysely_scale_version'))::int
            + (select count(*) from pg_trigger where tgrelid = to_regclass($1) and tgname = 'kysely_scale_gate')::int as n`,
      [quoteTable(table.name)],
    );
    if (present[0]?.n !== 3) await runDdl(client, tableGuardSql(table, slotCount), { purpose: 'install the fence policies', tables: [table.name] });
  }
}

/**
 * Installs the capture triggers of `tables` on a source, for the slots `kysely_scale.slot_move`
 * holds now (run it again after adding slots there; the install refuses if they changed meanwhile).
 */
export async function installCapture(client: Client, tables: readonly (ShardedTableSpec & { readonly keyType?: string })[], slotCount: number): Promise<void> {
  const { rows } = await client.query<{ slot: number }>('select slot from kysely_scale.slot_move');
  const moving = rows.map((r) => r.slot);
  for (const table of tables) {
    const { rows: present } = await client.query<{ capture: boolean; truncate: boolean }>(
      `select exists (select 1 from pg_trigger where tgrelid = to_regclass($1) and tgname = 'zz_kysely_scale_capture') as capture,
              exists (select 1 from pg_trigger where tgrelid = to_regclass($1) and tgname = 'kysely_scale_truncate') as truncate`,
      [quoteTable(table.name)],
    );
    await runDdl(client, captureTriggerSql(table, slotCount, moving, present[0]), { purpose: 'install the change capture', tables: [table.name] });
  }
}

/** Drops the capture triggers of `tables`. */
export async function dropCapture(client: Client, tables: readonly ShardedTableSpec[]): Promise<void> {
  for (const table of tables) await runDdl(client, dropCaptureSql(table), { purpose: 'drop the change capture', tables: [table.name] });
}
