/**
 * `verify`: every row of every sharded table is where the topology says (no row of a slot on a
 * shard that does not own it), with row counts and checksums per slot per table. Slots of an
 * unfinished move are left out (their rows are on both shards by design, hidden on one). Every
 * wait has a deadline: shard connections (10 s), each table's lock (`lockTimeoutMillis`), each
 * statement (`tuning.statementTimeoutMillis` without an answer) and each table's scan, one COPY
 * (`tuning.copyIdleTimeoutMillis` of silence), past which the shard is probed (`shard-deadlines.ts`).
 * A shard that stops answering stops verify with `E_MOVE_REFUSED`, reason `unreachable`, naming it;
 * a statement held up by a lock, reason `table-locked`, naming who keeps it.
 */
import type { Client } from 'pg';
import type { Topology } from '../../cluster/topology';
import { MoveRefusedError, ShardLockError, ShardSilentError } from './mover-errors';
import { toResultError, withMover, type MoverOptions } from './mover-session';
import type { ResultError } from './move-result';
import { requireDistinctTables } from './table-identity';
import { rollbackOrDrop, withShardSession } from './shard-session';
import { slotFigures, type Checksum } from './slot-checksum';
import { resolveKeyTypes, type KeyedTable } from './table-keys';
import { blockersContext, describeBlockers, lockForReading } from './lock-blockers';
import { quoteTable } from './shard-guard-sql';
import { SCAN_LOCK_TIMEOUT_MILLIS } from './paged-scan';
import { requirePositive } from '../../kernel/validate';

/** Rows of a slot found on a shard that does not own it. */
export interface MisplacedRows {
  readonly table: string;
  readonly shard: string;
  readonly slot: number;
  readonly rows: number;
}

/** Rows of a sharded table whose shard key is NULL: they belong to no slot (see `nullKeyRows` in `slot-checksum.ts`). */
export interface UnplaceableRows {
  readonly table: string;
  readonly shard: string;
  readonly rows: number;
}

/** What `verify` found. */
export interface VerifyResult {
  readonly ok: boolean;
  readonly version: number | null;
  readonly tables: readonly { readonly name: string; readonly rows: number; readonly slotsWithRows: number }[];
  readonly misplaced: readonly MisplacedRows[];
  /** Rows whose shard key is NULL, per table and shard: no slot owns them, so `ok` is false while any exist. */
  readonly unplaceable: readonly UnplaceableRows[];
  /** Per table, per slot: the owner's rows and checksum (compare two runs to prove a move lost and duplicated nothing). */
  readonly slots: Readonly<Record<string, Readonly<Record<number, Checksum>>>>;
  /** Slots skipped because a move of them is not finished. */
  readonly skippedSlots: number;
  readonly error: ResultError | null;
}

/** Options of {@link verifyShards}. */
export interface VerifyOptions extends MoverOptions {
  /**
   * How long the scan of a table waits for its `ACCESS SHARE` lock (only an `ACCESS EXCLUSIVE`
   * request, such as a migration's `ALTER TABLE`, makes it wait); past it `verify` stops with
   * `E_MOVE_REFUSED` (reason `table-locked`) naming the table, the shard and the backends keeping
   * the lock. @default 5000 (the mover's scans' {@link SCAN_LOCK_TIMEOUT_MILLIS})
   */
  readonly lockTimeoutMillis?: number;
}

/** Checks every shard of the catalog's latest topology. */
export async function verifyShards(options: VerifyOptions): Promise<VerifyResult> {
  const lockTimeoutMillis = options.lockTimeoutMillis ?? SCAN_LOCK_TIMEOUT_MILLIS;
  try {
    requirePositive('lockTimeoutMillis', lockTimeoutMillis);
    return await withMover(options, async (frame) => {
      const topology: Topology | undefined = await frame.catalog.latest();
      if (topology === undefined) throw new MoveRefusedError('no-catalog', 'The catalog holds no topology: run init first.');
      if (frame.tables.length === 0) throw new MoveRefusedError('no-tables', 'No sharded tables are registered: pass them (--table orders=user_id) once.');
      const open = await frame.store.open();
      const skipped = new Set(open?.batches.filter((b) => b.phase !== 'cleaned' && b.phase !== 'aborted').flatMap((b) => b.slots) ?? []);
      const misplaced: MisplacedRows[] = [];
      const unplaceable: UnplaceableRows[] = [];
      const slots: Record<string, Record<number, Checksum>> = {};
      const totals = new Map<string, number>();
      const { statementTimeoutMillis, copyIdleTimeoutMillis } = frame.tuning;
      const owner = (shard: string) => ({ shard, deadlines: { statementTimeoutMillis, copyIdleTimeoutMillis }, ...(options.clock === undefined ? {} : { clock: options.clock }) });
      for (const shard of topology.shards) {
        await withShardSession(shard.primary.url, async (client) => {
          await requireDistinctTables(client, shard.id, frame.tables);
          const tables = await resolveKeyTypes(client, frame.tables, shard.id);
          for (const table of tables) {
            const { perSlot, nulls } = await scanTable(client, shard.id, table, topology.slotCount, lockTimeoutMillis);
            if (nulls > 0) unplaceable.push(Object.freeze({ table: table.name, shard: shard.id, rows: nulls }));
            const bySlot = (slots[table.name] ??= {});
            for (const [slot, sum] of perSlot) {
              if (skipped.has(slot)) continue;
              if (topology.shardForSlot(slot).id !== shard.id) misplaced.push(Object.freeze({ table: table.name, shard: shard.id, slot, rows: sum.rows }));
              else {
                bySlot[slot] = sum;
                totals.set(table.name, (totals.get(table.name) ?? 0) + sum.rows);
              }
            }
          }
        }, owner(shard.id)).catch((error: unknown) => {
          throw error instanceof ShardSilentError ? silentShard(error) : error instanceof ShardLockError ? lockedShard(error) : error;
        });
      }
      await frame.registerGivenTables();
      return Object.freeze({
        ok: misplaced.length === 0 && unplaceable.length === 0,
        version: topology.version,
        tables: frame.tables.map((t) => Object.freeze({ name: t.name, rows: totals.get(t.name) ?? 0, slotsWithRows: Object.keys(slots[t.name] ?? {}).length })),
        misplaced,
        unplaceable,
        slots,
        skippedSlots: skipped.size,
        error: null,
      });
    });
  } catch (error) {
    return { ok: false, version: null, tables: [], misplaced: [], unplaceable: [], slots: {}, skippedSlots: 0, error: toResultError(error) };
  }
}

/** A shard that stopped answering, as verify reports it: a refusal (nothing was changed), to run again. */
function silentShard(error: ShardSilentError): MoveRefusedError {
  return new MoveRefusedError(
    'unreachable',
    `verify stopped: shard "${error.shard}" did not answer ${error.waitedFor} within ${error.millis} ms (${error.option}, ${error.flag}), and ${error.finding}. ` +
      `Nothing was changed; run verify again once it answers (if it is only slow, give it longer with ${error.flag}).`,
    { ...error.context },
  );
}

/** A statement of verify's held up by a lock past the mover's bound: a refusal naming who keeps it. */
function lockedShard(error: ShardLockError): MoveRefusedError {
  const message = error.message.replace(/: it dropped its session and stopped\. .*$/, '');
  return new MoveRefusedError('table-locked', `verify stopped: ${message}. Nothing was changed; end those transactions (or let them finish), then run verify again.`, { ...error.context, table: error.table });
}

/**
 * One table's per-slot figures and NULL-key rows (from the same scan), in one snapshot, once its
 * lock is had within `lockTimeoutMillis` (a verify queued behind a migration would otherwise wait
 * for it forever, and every app statement on the table would queue behind the verify).
 */
async function scanTable(client: Client, shardId: string, table: KeyedTable, slotCount: number, lockTimeoutMillis: number): Promise<{ perSlot: Map<number, Checksum>; nulls: number }> {
  await client.query('begin isolation level repeatable read read only');
  try {
    const blockers = await lockForReading(client, quoteTable(table.name), lockTimeoutMillis);
    if (blockers !== undefined) {
      throw new MoveRefusedError(
        'table-locked',
        `verify could not read table ${table.name} on shard "${shardId}": its lock stayed taken for ${lockTimeoutMillis} ms` +
          (blockers.length > 0 ? ` by ${describeBlockers(blockers)}` : ' (an ACCESS EXCLUSIVE lock, a migration\'s, held or awaited it)') +
          '. Let the migration finish (or end the transactions it waits for), then run verify again.',
        { table: table.name, shard: shardId, sqlState: '55P03', ...blockersContext(blockers) },
      );
    }
    const { perSlot, nullKeys } = await slotFigures(client, table, undefined, slotCount);
    await client.query('commit');
    return { perSlot, nulls: nullKeys };
  } catch (error) {
    await rollbackOrDrop(client);
    throw error;
  }
}
