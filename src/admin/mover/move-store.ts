/**
 * The mover's tables in the catalog database, beside the topology table: `move` (one row per move,
 * its batches as JSON) and `sharded_table` (the sharded tables and their key columns, so `resume`,
 * `verify` and later moves need not be told again).
 */
import { randomUUID } from 'node:crypto';
import type { MoveBatch, MoveKind, MoveRecord, MoveStatus, UnshardedStep } from './move-record';
import type { ShardedTableSpec } from './shard-guard-sql';
import { systemClock, type Clock } from '../../kernel/clock';
import { ConfigError } from '../../kernel/errors';
import type { PublishPrecondition } from '../topology-catalog';
import { MoveFailedError } from './mover-errors';
import { connectionBroke, saveBudget, saveUnconfirmed, sendAlone, type SaveBudget, type StorePool, type UnconfirmedStep } from './move-store-send';

export type { StorePool, StoreQueries } from './move-store-send';

interface MoveRow {
  id: string;
  kind: MoveKind;
  status: MoveStatus;
  tables: ShardedTableSpec[];
  batches: MoveBatch[];
  remove_shard: string | null;
  unsharded: UnshardedStep | null;
  error: string | null;
  created_at: Date;
  updated_at: Date;
  revision: string;
  writer: string | null;
  writer_seq: string;
}

/** Options of a {@link MoveStore}. */
export interface MoveStoreOptions {
  /** Times each save's budget. @default systemClock */
  readonly clock?: Clock;
}

/** A save's answer: the row's revision and the `writer_seq` of the save of this store it holds. */
interface SavedRow {
  revision: string;
  writer_seq: string;
}

/**
 * Per record, the save it was read at or last saved as: the row's `writer` and `writer_seq`. Unlike
 * a revision number, this pair names one save even after the catalog lost acknowledged saves (an
 * asynchronous standby promoted), when other saves can bring the revision back round. Kept for
 * every store (a record read by one store may be saved by another).
 */
const readAt = new WeakMap<MoveRecord, { readonly writer: string | null; readonly seq: string }>();

/** Whether `error` is a save refused because another command saved the move since ({@link MoveStore.save}). */
export function isRecordChanged(error: unknown): boolean {
  return error instanceof MoveFailedError && error.context.reason === 'record-changed';
}

/**
 * Reads and writes move records in the catalog's schema. Each save is guarded: it applies only
 * over the save the record was read at (its revision, `writer` and `writer_seq`), or over a save of
 * this store (`writer`, one per store). So a save held on the wire or by a frozen catalog that
 * commits late (its command gave up on it) never overwrites what a later command saved since, and a
 * second command acting on the same move (the operator lock lost unnoticed) is stopped at its next
 * save. A store is one command's, and saves that command's one record object.
 */
export class MoveStore {
  readonly #pool: StorePool;
  readonly #schema: string;
  readonly #writer = randomUUID();
  readonly #clock: Clock;
  /** Numbers this store's saves in the order it sends them. */
  #saves = 0;
  /** Per record: the highest `writer_seq` answered (its revision is the record's `revision`). */
  readonly #answered = new WeakMap<MoveRecord, number>();

  constructor(pool: StorePool, schema: string, options: MoveStoreOptions = {}) {
    this.#pool = pool;
    this.#schema = `"${schema}"`;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Creates the mover's tables if missing (idempotent). Every command calls it, so a catalog
   * already in shape is only read: the DDL would take an exclusive lock on `move` each time (a
   * `status` in a loop would hold up the running mover's saves). Installs run one at a time (an
   * advisory lock): two commands started at once on a new catalog (a move and a `moves`) raced on
   * `create table if not exists` and one failed with 42P07.
   */
  async install(): Promise<void> {
    if (await this.#installed()) return;
    const s = this.#schema;
    const client = await this.#pool.connect();
    let broken = false;
    try {
      await client.query('begin');
      await client.query(`select pg_advisory_xact_lock(hashtext('kysely_scale move store install'))`);
      for (const sql of [
        `create schema if not exists ${s}`,
        `create table if not exists ${s}.move (id bigserial primary key, kind text not null, status text not null, tables jsonb not null, batches jsonb not null,
          remove_shard text, error text, created_at timestamptz not null default now(), updated_at timestamptz not null default now())`,
        // Added with the unsharded step of a drain (catalogs installed before it get the column here).
        `alter table ${s}.move add column if not exists unsharded jsonb`,
        // Added with the guarded save (see MoveStore).
        `alter table ${s}.move add column if not exists revision bigint not null default 0`,
        `alter table ${s}.move add column if not exists writer text`,
        `alter table ${s}.move add column if not exists writer_seq bigint not null default 0`,
        // At most one open move: the database refuses a second even if two operators raced past the lock.
        `create unique index if not exists move_one_open on ${s}.move ((true)) where status = 'open'`,
        `create table if not exists ${s}.sharded_table (name text primary key, key_column text not null)`,
      ]) {
        await client.query(sql);
      }
      await client.query('commit');
    } catch (error) {
      // Never a rollback over a dropped connection (its server process rolls back as it ends).
      if (client.lost?.aborted === true) broken = true;
      else {
        await client.query('rollback').catch(() => {
          broken = true;
        });
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }

  /** Whether every object {@link install} makes is there. */
  async #installed(): Promise<boolean> {
    const s = this.#schema;
    const { rows } = await this.#pool.query<{ ok: boolean }>(
      `select to_regclass($1) is not null and to_regclass($2) is not null
          and (select count(*) from pg_attribute where attrelid = to_regclass($3) and attname in ('unsharded', 'revision', 'writer', 'writer_seq') and not attisdropped) = 4 as ok`,
      [`${s}.sharded_table`, `${s}.move_one_open`, `${s}.move`],
    );
    return rows[0]?.ok === true;
  }

  /** The registered sharded tables. */
  async tables(): Promise<ShardedTableSpec[]> {
    const { rows } = await this.#pool.query<{ name: string; key_column: string }>(`select name, key_column from ${this.#schema}.sharded_table order by name`);
    return rows.map((r) => Object.freeze({ name: r.name, keyColumn: r.key_column }));
  }

  /** Registers sharded tables not registered yet (a registered table's key column never changes here: see {@link withGivenTables}). */
  async registerTables(tables: readonly ShardedTableSpec[]): Promise<void> {
    for (const t of tables) {
      await this.#pool.query(`insert into ${this.#schema}.sharded_table (name, key_column) values ($1, $2) on conflict (name) do nothing`, [t.name, t.keyColumn]);
    }
  }

  /** Stores a new open move; fails with PostgreSQL's 23505 when another move is open. */
  async create(kind: MoveKind, tables: readonly ShardedTableSpec[], batches: readonly MoveBatch[], removeShard?: string, unsharded?: UnshardedStep): Promise<MoveRecord> {
    const { rows } = await this.#pool.query<MoveRow>(
      `insert into ${this.#schema}.move (kind, status, tables, batches, remove_shard, unsharded, writer) values ($1, 'open', $2, $3, $4, $5, $6) returning *`,
      [kind, JSON.stringify(tables), JSON.stringify(batches), removeShard ?? null, unsharded === undefined ? null : JSON.stringify(unsharded), this.#writer],
    );
    return toRecord(rows[0]!);
  }

  /**
   * Saves a move's status, batches and error, over the save `move` was read at (the row's revision,
   * `writer` and `writer_seq` as read: a revision alone can come round again after the catalog lost
   * acknowledged saves, to another command's save), or over an earlier save of this store (one whose
   * answer never came may have committed; a later one is never overwritten by it). Once a save of
   * `move` was answered, only this store's own saves are saved over. A save refused because a later
   * save of this store is in already succeeds: saves of one command may be in flight together (a live
   * progress save beside a table copy's claim), and the later one wrote the whole record from newer
   * state. `move.revision` becomes the revision of the latest save of this store answered (answers
   * may come back in any order). A record not read through a store is saved over its revision alone.
   *
   * A save whose connection broke under a statement (a reset path, a terminated server process, a
   * catalog restart or failover) is sent once more on a new connection (the pool's older ones,
   * likely broken by the same event, are dropped when next picked), as the same save (same
   * `writer_seq`): a first attempt that committed unseen is then found in and counted once, and the
   * resend can neither overtake a later save of this store nor be taken for another command's. A
   * connect that fails (a catalog that cannot be reached, or accepts and closes) is not retried.
   * Refused, one more statement reads the row. When the resend cannot connect or breaks too, or that
   * read fails, the save's outcome is unknown: `E_MOVE_FAILED` with `context.reason`
   * `save-unconfirmed` (the catalog named, the socket's error as `cause`), never `record-changed`
   * (no other command is known to exist).
   *
   * Bound: the whole save, resend and read included, takes at most one connection's and one
   * statement's deadline, `connectionTimeoutMillis + statementTimeoutMillis + 2 × 500 ms` (16 s with
   * the defaults), as before the resend; the resend and the read get what is left of it. Past it the
   * save fails with `E_CATALOG_UNAVAILABLE`.
   *
   * Fails with `E_MOVE_FAILED` (`context.reason` `record-changed`) when another command saved it since.
   */
  async save(move: MoveRecord): Promise<void> {
    move.updatedAt = new Date();
    // Numbered and serialized together (no await in between): a higher writer_seq of this store
    // always carries newer state of the record (a command saves one record object), and every save
    // writes the same columns, whole. So a save found overtaken by a later one of this store is in.
    const seq = ++this.#saves;
    const answered = this.#answered.has(move);
    const at = answered ? undefined : readAt.get(move);
    const over = answered ? null : move.revision; // null: never equal
    const values = [move.id, move.status, JSON.stringify(move.batches), move.error, move.unsharded === undefined ? null : JSON.stringify(move.unsharded), over, this.#writer, seq, at?.writer ?? null, at?.seq ?? null];
    const text = `update ${this.#schema}.move set status = $2, batches = $3, error = $4, unsharded = $5, updated_at = now(), revision = revision + 1, writer = $7, writer_seq = $8
         where id = $1 and ((revision = $6 and ($10::bigint is null or (writer is not distinct from $9::text and writer_seq = $10::bigint))) or (writer = $7 and writer_seq < $8))
         returning revision, writer_seq`;
    const budget = saveBudget(this.#pool, this.#clock);
    const sent = await sendAlone<SavedRow>(this.#pool, budget, text, values);
    let row: SavedRow;
    // The same values: the same writer_seq, so it applies only where the first attempt would have.
    if ('failed' in sent && connectionBroke(sent.failed)) row = await this.#resend(budget, move.id, seq, text, values, sent.failed);
    else if ('failed' in sent) throw sent.failed;
    else row = sent.rows[0] ?? (await this.#inSince(budget, move.id, seq));
    if (Number(row.writer_seq) > (this.#answered.get(move) ?? 0)) {
      this.#answered.set(move, Number(row.writer_seq));
      move.revision = Number(row.revision);
      readAt.set(move, { writer: this.#writer, seq: row.writer_seq });
    }
  }

  /**
   * Sends save `seq` once more after its first attempt's connection broke (`first`), and reads the
   * row when it is refused. A failure of either leaves the save's outcome unknown ({@link saveUnconfirmed}).
   */
  async #resend(budget: SaveBudget, id: number, seq: number, text: string, values: unknown[], first: unknown): Promise<SavedRow> {
    const unconfirmed =
      (step: UnconfirmedStep) =>
      (error: unknown): never => {
        throw saveUnconfirmed(this.#pool, id, step, error);
      };
    const sent = await sendAlone<SavedRow>(this.#pool, budget, text, values, first).catch(unconfirmed('resend-connect'));
    if ('failed' in sent) return unconfirmed('resend')(sent.failed);
    return sent.rows[0] ?? (await this.#inSince(budget, id, seq).catch(unconfirmed('read')));
  }

  /**
   * The row when this store's save `seq` (its first attempt, committed unseen) or a later save of
   * this store is in, read after that save was refused; else `record-changed`. A statement of its
   * own, after the refusal: within the update's statement, a save of this store committed while
   * the update waited for the row would be missing from the snapshot. A read that fails is no
   * evidence of another command: its error is thrown, never `record-changed` (a cutover's caller
   * then backs out, its own claim deciding whose the move is).
   */
  async #inSince(budget: SaveBudget, id: number, seq: number): Promise<SavedRow> {
    const read = await sendAlone<SavedRow>(this.#pool, budget, `select revision, writer_seq from ${this.#schema}.move where id = $1 and writer = $2 and writer_seq >= $3`, [id, this.#writer, seq]);
    if ('failed' in read) throw read.failed;
    if (read.rows[0] === undefined) throw recordChanged(id, 'since this one read it (another mover or abort acts on it, or a save of an earlier command committed late):');
    return read.rows[0];
  }

  /**
   * What a publish of this command for `move` commits under: no other command saved the move since
   * this one's last save or read (its own later saves, such as the one recording a publish's
   * unknown outcome, leave it true). The record's row is locked for share until the publish ends,
   * so once another command's claim returns, a publish of this command not in the catalog never
   * will be: a mover that lost its operator lock unnoticed cannot publish over an abort (review 61).
   */
  publishPrecondition(move: MoveRecord): PublishPrecondition {
    return {
      // Over the save `move` was read at only until a save of it was answered, as a save ({@link save}).
      sql: `exists (select 1 from ${this.#schema}.move where id = ${Number(move.id)} and (${this.#answered.has(move) ? '' : `${readAtSql(move)} or `}writer = '${this.#writer}') for share)`,
      refused: () => recordChanged(move.id, 'since this one last saved it (another command took the move over): this publish was refused, nothing was published, and'),
    };
  }

  /**
   * Claims `move` for this command before it changes anything on a shard: a guarded save of the
   * record as read. A command that acts on a move (resume, abort) claims it first, so a mover still
   * running on a lost operator lock is stopped at its next save (the one before its next publish),
   * and if that mover saved since the read, this command stops here, having changed nothing.
   */
  claim(move: MoveRecord): Promise<void> {
    return this.save(move);
  }

  /** The open move, if any. */
  async open(): Promise<MoveRecord | undefined> {
    const { rows } = await this.#pool.query<MoveRow>(`select * from ${this.#schema}.move where status = 'open' order by id limit 1`);
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  /** A move by id. */
  async get(id: number): Promise<MoveRecord | undefined> {
    const { rows } = await this.#pool.query<MoveRow>(`select * from ${this.#schema}.move where id = $1`, [id]);
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  /** Moves, newest first. */
  async list(limit: number): Promise<MoveRecord[]> {
    const { rows } = await this.#pool.query<MoveRow>(`select * from ${this.#schema}.move order by id desc limit $1`, [limit]);
    return rows.map(toRecord);
  }
}

/** The refusal of a save (or publish) over a move record another command saved since (`since`: when, and why). */
function recordChanged(id: number, since: string): MoveFailedError {
  return new MoveFailedError(`Move ${id} was saved by another command ${since} this command stops here. Run \`status\` to see where the move stands, then resume or abort it.`, {
    moveId: id,
    reason: 'record-changed',
  });
}

/** The guard of a save over the save `move` was read at, as SQL (a record not read through a store: its revision alone). */
function readAtSql(move: MoveRecord): string {
  const at = readAt.get(move);
  const revision = `revision = ${Number(move.revision)}`;
  if (at === undefined) return revision;
  // `writer` is a store's UUID as read from the row: quoted all the same.
  const writer = at.writer === null ? 'null' : `'${at.writer.replace(/'/g, "''")}'`;
  return `(${revision} and writer is not distinct from ${writer} and writer_seq = ${BigInt(at.seq).toString()})`;
}

/** A record as read from its row, the save it was read at kept ({@link readAt}). */
function toRecord(row: MoveRow): MoveRecord {
  const record: MoveRecord = {
    id: Number(row.id),
    kind: row.kind,
    status: row.status,
    tables: row.tables,
    batches: row.batches,
    ...(row.remove_shard === null ? {} : { removeShard: row.remove_shard }),
    ...(row.unsharded == null ? {} : { unsharded: row.unsharded }),
    error: row.error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    revision: Number(row.revision),
  };
  readAt.set(record, { writer: row.writer, seq: String(row.writer_seq) });
  return record;
}

/**
 * The registered tables with the `given` ones added. A given table that is registered under another
 * key column is refused (`E_INVALID_CONFIG`): its rows are placed by the registered column, and
 * moving or verifying them by another one would put rows where no router looks for them.
 */
export function withGivenTables(registered: readonly ShardedTableSpec[], given: readonly ShardedTableSpec[]): ShardedTableSpec[] {
  const byName = new Map(registered.map((t) => [t.name, t]));
  for (const t of given) {
    const known = byName.get(t.name);
    if (known === undefined) byName.set(t.name, Object.freeze({ name: t.name, keyColumn: t.keyColumn }));
    else if (known.keyColumn !== t.keyColumn) {
      throw new ConfigError(
        `tables.${t.name}`,
        `"${t.name}" is registered with shard key column "${known.keyColumn}", not "${t.keyColumn}": its rows are placed by "${known.keyColumn}", so the key cannot change in place. Leave the table out (registered tables need not be given again) or give "${t.name}=${known.keyColumn}"`,
      );
    }
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
