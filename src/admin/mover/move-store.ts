/**
 * The mover's tables in the catalog database, beside the topology table: `move` (one row per move,
 * its batches as JSON) and `sharded_table` (the sharded tables and their key columns, so `resume`,
 * `verify` and later moves need not be told again).
 */
import { randomUUID } from 'node:crypto';
import type { QueryResult, QueryResultRow } from 'pg';
import type { MoveBatch, MoveKind, MoveRecord, MoveStatus, UnshardedStep } from './move-record';
import type { ShardedTableSpec } from './shard-guard-sql';
import { systemClock, type Clock } from '../../kernel/clock';
import { DeadlineError, withDeadline } from '../../kernel/deadline';
import { ConfigError } from '../../kernel/errors';
import { CatalogTimeoutError, GRACE_MILLIS, type CatalogDeadlines } from '../catalog-connections';
import type { PublishPrecondition } from '../topology-catalog';
import { MoveFailedError } from './mover-errors';

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
}

/** Statements on the catalog (a `CatalogPool`, with its deadlines, or a pg `Pool`). */
export interface StoreQueries {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/**
 * Connections to the catalog: statements, and a session of its own (released afterwards; `true`
 * drops it). A `CatalogPool`'s session says when it is `lost` (its connection failed, or a
 * statement passed its deadline and the connection was dropped): nothing more is sent on it.
 */
export interface StorePool extends StoreQueries {
  connect(): Promise<StoreQueries & { release(destroy?: boolean): void; readonly lost?: AbortSignal }>;
  /** A `CatalogPool`'s deadlines: one save's budget ({@link MoveStore.save}). Without them and {@link redactedUrl} (a pg `Pool`), a save has no budget of its own. */
  readonly deadlines?: Required<CatalogDeadlines>;
  /** The catalog's URL, password redacted (named when a save's budget runs out). */
  readonly redactedUrl?: string;
  /** Opens new connections from now on (a `CatalogPool`'s `renew`): called once one broke under a statement. */
  renew?(): void;
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

/** Whether `error` is a save refused because another command saved the move since ({@link MoveStore.save}). */
export function isRecordChanged(error: unknown): boolean {
  return error instanceof MoveFailedError && error.context.reason === 'record-changed';
}

/**
 * Reads and writes move records in the catalog's schema. Each save is guarded: it applies only
 * over the revision this store last read or wrote, or over a save of its own (`writer`, one per
 * store). So a save held on the wire or by a frozen catalog that commits late (its command gave
 * up on it) never overwrites what a later command saved since, and a second command acting on the
 * same move (the operator lock lost unnoticed) is stopped at its next save. A store is one
 * command's, and saves that command's one record object.
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
   * Saves a move's status, batches and error, over the revision `move` was read at, or over an
   * earlier save of this store (one whose answer never came may have committed; a later one is
   * never overwritten by it). Once a save of `move` was answered, only this store's own saves are
   * saved over: on a catalog that lost acknowledged commits (an asynchronous standby promoted),
   * another command's saves can bring the revision round to the one this command holds. A save
   * refused because a later save of this store is in already succeeds: saves of one command may be
   * in flight together (a live progress save beside a table copy's claim), and the later one wrote
   * the whole record from newer state. `move.revision` becomes the revision of the latest save of
   * this store answered (answers may come back in any order).
   *
   * A save whose connection broke under a statement (a reset path, a terminated server process, a
   * catalog restart or failover) is sent once more on a new connection (the pool's older ones,
   * likely broken by the same event, are dropped when next picked), as the same save (same
   * `writer_seq`): a first attempt that committed unseen is then found in and counted once, and the
   * resend can neither overtake a later save of this store nor be taken for another command's. A
   * connect that fails (a catalog that cannot be reached, or accepts and closes) is not retried.
   * Refused, one more statement reads the row; a read that fails throws its own error, never
   * `record-changed` (no other command is known to exist).
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
    const over = this.#answered.has(move) ? null : move.revision; // null: never equal
    const values = [move.id, move.status, JSON.stringify(move.batches), move.error, move.unsharded === undefined ? null : JSON.stringify(move.unsharded), over, this.#writer, seq];
    const text = `update ${this.#schema}.move set status = $2, batches = $3, error = $4, unsharded = $5, updated_at = now(), revision = revision + 1, writer = $7, writer_seq = $8
         where id = $1 and (revision = $6 or (writer = $7 and writer_seq < $8)) returning revision, writer_seq`;
    const budget = this.#budget();
    let sent = await this.#send<SavedRow>(budget, text, values);
    // The same values: the same writer_seq, so it applies only where the first attempt would have.
    if ('failed' in sent && connectionBroke(sent.failed)) sent = await this.#send<SavedRow>(budget, text, values, sent.failed);
    if ('failed' in sent) throw sent.failed;
    const row = sent.rows[0] ?? (await this.#inSince(budget, move.id, seq));
    if (Number(row.writer_seq) > (this.#answered.get(move) ?? 0)) {
      this.#answered.set(move, Number(row.writer_seq));
      move.revision = Number(row.revision);
    }
  }

  /**
   * The row when this store's save `seq` (its first attempt, committed unseen) or a later save of
   * this store is in, read after that save was refused; else `record-changed`. A statement of its
   * own, after the refusal: within the update's statement, a save of this store committed while
   * the update waited for the row would be missing from the snapshot. A read that fails is no
   * evidence of another command: its error is thrown as it is (a cutover's caller then backs out,
   * its own claim deciding whose the move is).
   */
  async #inSince(budget: SaveBudget, id: number, seq: number): Promise<SavedRow> {
    const read = await this.#send<SavedRow>(budget, `select revision, writer_seq from ${this.#schema}.move where id = $1 and writer = $2 and writer_seq >= $3`, [id, this.#writer, seq]);
    if ('failed' in read) throw read.failed;
    if (read.rows[0] === undefined) throw recordChanged(id, 'since this one read it (another mover or abort acts on it, or a save of an earlier command committed late):');
    return read.rows[0];
  }

  /**
   * `text` on a connection of its own, within what is left of `budget`. A failed connect is thrown
   * (never retried); a statement's error is returned, its connection dropped (and, broken, the
   * pool's older connections with it). `cause`: why this is a second statement (a late one names it).
   */
  async #send<R extends QueryResultRow>(budget: SaveBudget, text: string, values: unknown[], cause?: unknown): Promise<{ rows: R[] } | { failed: unknown }> {
    const session = await budget(() => this.#pool.connect(), (pending) => void pending.then((s) => s.release(true), () => undefined), cause);
    let released = false;
    const release = (destroy: boolean): void => {
      if (released) return;
      released = true;
      session.release(destroy || session.lost?.aborted === true);
    };
    try {
      const { rows } = await budget(() => session.query<R>(text, values), () => release(true), cause);
      release(false);
      return { rows };
    } catch (error) {
      release(true);
      if (connectionBroke(error)) this.#pool.renew?.();
      return { failed: error };
    }
  }

  /** The budget of one save: one connection's and one statement's deadline (none for a pool without deadlines). */
  #budget(): SaveBudget {
    const { deadlines, redactedUrl } = this.#pool;
    if (deadlines === undefined || redactedUrl === undefined) return saveBudget(this.#clock, 0);
    const millis = deadlines.connectionTimeoutMillis + deadlines.statementTimeoutMillis + 2 * GRACE_MILLIS;
    const within = `connectionTimeoutMillis + statementTimeoutMillis + 2 × ${GRACE_MILLIS} ms: one save, its resend and read included`;
    return saveBudget(this.#clock, millis, (cause) => new CatalogTimeoutError(redactedUrl, 'a move-record save', millis, 'statementTimeoutMillis', cause, { within }));
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
      // Over the revision only until a save of `move` was answered, as a save ({@link save}).
      sql: `exists (select 1 from ${this.#schema}.move where id = ${Number(move.id)} and (${this.#answered.has(move) ? '' : `revision = ${Number(move.revision)} or `}writer = '${this.#writer}') for share)`,
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

/** Runs `start()` within what is left of a save's budget (not at all once nothing is); past it, `onLate` gets what it started and the budget's error is thrown (`cause`: why this step runs). */
type SaveBudget = <T>(start: () => Promise<T>, onLate: (pending: Promise<T>) => void, cause?: unknown) => Promise<T>;

/** The budget of one save, `millis` from now on `clock`; `fail` makes its error. Without `fail`, no limit. */
function saveBudget(clock: Clock, millis: number, fail?: (cause: unknown) => Error): SaveBudget {
  const end = clock.monotonicNow() + millis;
  return async (start, onLate, cause) => {
    if (fail === undefined) return start();
    const left = end - clock.monotonicNow();
    if (left <= 0) throw fail(cause);
    const pending = start();
    let passed = false;
    try {
      const late = (): void => {
        passed = true;
        onLate(pending);
      };
      return await withDeadline(pending, left, 'a move-record save', { clock, onLate: late });
    } catch (error) {
      throw passed ? fail(cause ?? error) : error;
    }
  };
}

/** SQLSTATEs of a server process that ended under a statement: terminated (57P01: pg_terminate_backend, a fast shutdown), crashed (57P02), a connection failure. */
const ENDED_UNDER_STATEMENT = new Set(['57P01', '57P02', '08006', '08003']);

/**
 * Whether a statement's `error` is its open connection breaking under it (reset, its server process
 * terminated or crashed, the connection ended), or that connection found broken when used. Not a
 * deadline that passed (`E_CATALOG_UNAVAILABLE`), or a statement's own error. (A connect's error is
 * never retried, whatever it is: a catalog that refuses, or accepts and closes, is asked once.)
 */
function connectionBroke(error: unknown): boolean {
  if (error instanceof DeadlineError) return false;
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ECONNRESET' || code === 'EPIPE' || (typeof code === 'string' && ENDED_UNDER_STATEMENT.has(code))) return true;
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && /^(Connection terminated unexpectedly|Client has encountered a connection error and is not queryable)$/.test(message);
}

function toRecord(row: MoveRow): MoveRecord {
  return {
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
