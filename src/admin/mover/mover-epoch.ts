/**
 * The mover's fencing token on the shards (Kleppmann's fencing tokens, Chubby's sequencers). The
 * operator lock alone cannot keep a command that lost it from acting: between its last lock check
 * and its next statement's arrival on a shard, another operator's command may take the lock and
 * settle the move. So each lock-holding command gets a strictly increasing epoch from the catalog
 * (`TopologyCatalog.withOperatorLock`), and each shard keeps, in `kysely_scale.mover_epoch` (one
 * row, apart from `shard_guard`, whose row the mover updates from other sessions), the highest
 * epoch that acted on it:
 *
 * - before a command's first change to a shard it raises the shard's epoch to its own
 *   (`raise_mover_epoch`: an update `where epoch < $E`, which waits for transactions of older
 *   commands holding the row `for share` to end, under the session's deadlines: a lock waited for
 *   past the mover's bound fails naming who holds it); a shard holding a larger epoch refuses;
 * - every transaction of the mover that changes a shard checks its epoch first
 *   (`check_mover_epoch`, which locks the row `for share` until the transaction ends): once a newer
 *   command's raise returned, no change of an older command can commit any more there, and a
 *   change checked before that raise committed before it.
 *
 * A refusal is SQLSTATE {@link SUPERSEDED_SQLSTATE}, turned into {@link MoverSupersededError}. The
 * check rides in the transaction's first message (`begin; select …`, or `select …; <statement>` as
 * one implicit transaction): no extra round trip; the raise is one per shard per command. App
 * statements never touch the row. Sessions of a move are bound to their command's epoch
 * ({@link bindEpoch}); a session bound to none (a plan's, `verify`'s) runs its statements unchecked.
 */
import type { Client, QueryResult } from 'pg';
import { randomUUID } from 'node:crypto';
import { EpochSequenceBehindError, MoveFailedError, MoverSupersededError } from './mover-errors';
import { rollbackOrDrop } from './shard-session';

/** SQLSTATE of a statement refused because a newer operator command acted on the shard. */
export const SUPERSEDED_SQLSTATE = 'KS004';

/** The epoch table and its functions (idempotent; installed with the shard guard, and on demand by the first raise). */
export const MOVER_EPOCH_SQL = `
create schema if not exists kysely_scale;
create table if not exists kysely_scale.mover_epoch (
  only_row boolean primary key default true check (only_row),
  epoch bigint not null default 0,
  raised_at timestamptz not null default now()
);
-- The command that raised the epoch (a random id drawn with it): an equal epoch of another command
-- (a catalog whose sequence went back) is refused. Added to shards installed before it.
alter table kysely_scale.mover_epoch add column if not exists holder text;
insert into kysely_scale.mover_epoch (only_row) values (true) on conflict (only_row) do nothing;

-- A plain update (never an upsert, which locks the row even when its condition fails): a raise to
-- the epoch the shard already holds takes no lock, so it never waits for its own command.
create or replace function kysely_scale.raise_mover_epoch(e bigint, h text) returns bigint
language plpgsql volatile as $raise$
declare
  cur bigint;
  cur_holder text;
begin
  update kysely_scale.mover_epoch set epoch = e, holder = h, raised_at = now() where epoch < e;
  select epoch, holder into cur, cur_holder from kysely_scale.mover_epoch;
  if not found then
    insert into kysely_scale.mover_epoch (epoch, holder) values (e, h) on conflict (only_row) do nothing;
    select epoch, holder into cur, cur_holder from kysely_scale.mover_epoch;
  end if;
  if cur > e or (cur = e and cur_holder is distinct from h) then
    raise exception using errcode = '${SUPERSEDED_SQLSTATE}',
      message = format('kysely-scale: another operator command (mover epoch %s) acted on this shard; this command''s epoch is %s', cur, e),
      detail = json_build_object('epoch', cur::text)::text;
  end if;
  return cur;
end
$raise$;

-- FOR SHARE until the transaction ends: a newer command's raise waits for it, and after that raise
-- no transaction of an older command (nor of another with the same epoch) passes here.
create or replace function kysely_scale.check_mover_epoch(e bigint, h text) returns void
language plpgsql volatile as $check$
declare
  cur bigint;
  cur_holder text;
begin
  select epoch, holder into cur, cur_holder from kysely_scale.mover_epoch for share;
  if not found or cur > e or (cur = e and cur_holder is distinct from h) then
    raise exception using errcode = '${SUPERSEDED_SQLSTATE}',
      message = format('kysely-scale: another operator command (mover epoch %s) acted on this shard; this command''s epoch is %s', coalesce(cur::text, 'unknown'), e),
      detail = json_build_object('epoch', cur::text)::text;
  end if;
end
$check$;
`;

/**
 * Where a command's epoch comes from: the operator lock (`OperatorLockBody`'s `epoch`), drawn when
 * the command first acts on a shard, so commands that never do (init, migrate, status) need no
 * sequence. `latest` and `sequence` tell a shard ahead of the catalog's sequence (a restored
 * catalog) from a newer command's epoch.
 */
export interface EpochSource {
  /** This holder's epoch (drawn once); undefined when the catalog has none to give (not installed): a command then changes nothing (E_MOVE_FAILED, reason `no-epoch`). */
  draw(): Promise<bigint | undefined>;
  /** The catalog sequence's name, quoted and qualified. */
  readonly sequence?: string | undefined;
  /** The catalog sequence's latest value drawn. */
  latest?(): Promise<bigint | undefined>;
}

/** A command's epoch and its holder identity (a random id drawn with it: an equal epoch of another command is refused). */
export interface EpochToken {
  readonly value: bigint;
  readonly holder: string;
}

/** The epoch of one operator command, and the shards it raised (each once; a new epoch raises again). */
export class CommandEpoch {
  #source: EpochSource;
  #token: Promise<EpochToken> | undefined;
  #raised = new Map<string, Promise<EpochToken>>();

  /** `source`: where the epoch is drawn from (a bigint: that epoch, as tests give it), `holder`: its identity (default: random). */
  constructor(source: EpochSource | bigint, holder?: string) {
    this.#source = typeof source === 'bigint' ? { draw: async () => source } : source;
    if (holder !== undefined) this.#token = drawToken(this.#source, holder);
  }

  /**
   * The command's epoch, drawn on first use. A source that draws none (the catalog's sequence has no
   * schema) fails it (E_MOVE_FAILED, reason `no-epoch`): a command given an epoch source never changes a shard unchecked.
   */
  token(): Promise<EpochToken> {
    this.#token ??= drawToken(this.#source, randomUUID());
    return this.#token;
  }

  /** The command took the operator lock again (a back-out after a lost lock): its changes carry that lock's epoch from now on. */
  renew(source: EpochSource): void {
    this.#source = source;
    this.#token = undefined;
    this.#raised.clear();
  }

  /** Raises `shard`'s epoch (through `client`, a session of it) once per epoch; a failed raise is tried again next time. Resolves with the epoch raised. */
  raised(shard: string, client: Client): Promise<EpochToken> {
    let pending = this.#raised.get(shard);
    if (pending === undefined) {
      const source = this.#source;
      pending = this.token().then(async (token) => {
        await raiseEpoch(client, shard, token, source);
        return token;
      });
      this.#raised.set(shard, pending);
      const forget = (): void => {
        if (this.#raised.get(shard) === pending) this.#raised.delete(shard);
      };
      pending.catch(forget);
    }
    return pending;
  }
}

/**
 * The epoch drawn from `source`, with `holder`. None drawn (the catalog's sequence has no schema: a
 * catalog not installed or not migrated): its changes could not be fenced against a newer
 * command's, so the command fails before its first change to any shard (`context.reason` `no-epoch`).
 */
async function drawToken(source: EpochSource, holder: string): Promise<EpochToken> {
  const value = await source.draw();
  if (value === undefined) {
    const sequence = source.sequence ?? 'operator_epoch';
    throw new MoveFailedError(
      `The catalog's operator_epoch sequence (${sequence}) could not be drawn: its schema does not exist on the catalog. ` +
        'Install or migrate the catalog (`init`, `migrate`), then run the command again. Nothing was changed on any shard.',
      { reason: 'no-epoch', sequence },
    );
  }
  return { value, holder };
}

interface Binding {
  readonly shard: string;
  readonly command: CommandEpoch;
}

const bindings = new WeakMap<Client, Binding>();

/** Binds a mover session of `shard` to `command`'s epoch: its changes are checked from now on. */
export function bindEpoch(client: Client, shard: string, command: CommandEpoch): void {
  bindings.set(client, { shard, command });
}

/** Sessions that failed in the middle of installing the epoch objects (two installs at once) and may simply try again. */
const INSTALL_RACE = new Set(['23505', '42P07', '42710']);

/** Installs {@link MOVER_EPOCH_SQL} in one transaction (a concurrent install counts as done). */
export async function installEpoch(client: Client): Promise<void> {
  try {
    await client.query(`begin; ${MOVER_EPOCH_SQL} commit;`);
  } catch (error) {
    await rollbackOrDrop(client);
    if (!INSTALL_RACE.has(String((error as { code?: unknown }).code))) throw error;
  }
}

/** Raises `shard`'s epoch to `token` (installing the epoch objects first on a shard set up by an older version). */
async function raiseEpoch(client: Client, shard: string, token: EpochToken, source: EpochSource): Promise<void> {
  const raise = (): Promise<unknown> => client.query(`select kysely_scale.raise_mover_epoch(${token.value}::bigint, '${token.holder}')`);
  try {
    await raise().catch(async (error: unknown) => {
      const code = (error as { code?: unknown }).code;
      if (code !== '42883' && code !== '42P01') throw error;
      await installEpoch(client);
      await raise();
    });
  } catch (error) {
    const refused = superseded(error, shard, token.value);
    if (refused instanceof MoverSupersededError) throw await behindOrSuperseded(refused, shard, token, source);
    throw refused;
  }
}

/**
 * A raise refused: by a newer command, or because the catalog's sequence went back (restored from a
 * backup, re-created) below the shards' epochs: the shard then holds this very epoch from another
 * command, or one the sequence has not reached. That is said as such, with the fix.
 */
async function behindOrSuperseded(refused: MoverSupersededError, shard: string, token: EpochToken, source: EpochSource): Promise<Error> {
  const held = refused.context.shardEpoch;
  if (typeof held !== 'string' || !/^\d+$/.test(held)) return refused;
  const shardEpoch = BigInt(held);
  if (shardEpoch === token.value) return new EpochSequenceBehindError(shard, token.value, shardEpoch, source.sequence ?? 'operator_epoch', refused);
  let latest: bigint | undefined;
  try {
    latest = await source.latest?.();
  } catch (error) {
    // Not silently a takeover: the refusal says the sequence could not be compared, and why.
    const e = error as { code?: unknown; message?: unknown };
    const why = `${typeof e.code === 'string' ? `SQLSTATE ${e.code}: ` : ''}${String(e.message ?? error)}`;
    return new MoverSupersededError(shard, token.value, held, {}, refused.cause, { sequence: source.sequence ?? 'operator_epoch', why });
  }
  if (latest === undefined || shardEpoch <= latest) return refused;
  return new EpochSequenceBehindError(shard, token.value, shardEpoch, source.sequence ?? 'operator_epoch', refused);
}

/** `error` as {@link MoverSupersededError} when the shard refused this command's epoch; else as it is. */
function superseded(error: unknown, shard: string, epoch: bigint): unknown {
  const e = error as { code?: unknown; detail?: unknown };
  if (e.code !== SUPERSEDED_SQLSTATE) return error;
  let shardEpoch: string | undefined;
  try {
    shardEpoch = (JSON.parse(String(e.detail)) as { epoch?: string | null }).epoch ?? undefined;
  } catch {
    shardEpoch = undefined;
  }
  return new MoverSupersededError(shard, epoch, shardEpoch, {}, error);
}

/**
 * The check statement (with its `;`) for a transaction of `client`'s command, once its shard was
 * raised; '' for a session bound to no command. `map` turns a refusal into the coded error.
 */
export async function epochCheck(client: Client): Promise<EpochCheck> {
  const binding = bindings.get(client);
  if (binding === undefined) return { sql: '', map: (error) => error };
  const token = await binding.command.raised(binding.shard, client);
  const epoch = token.value;
  return {
    sql: `select kysely_scale.check_mover_epoch(${epoch}::bigint, '${token.holder}');`,
    // In a repeatable-read transaction the check's lock on a row a newer raise just updated fails with 40001: refused too.
    map: (error) => ((error as { code?: unknown }).code === '40001' ? new MoverSupersededError(binding.shard, epoch, undefined, {}, error) : superseded(error, binding.shard, epoch)),
  };
}

/** What {@link epochCheck} gives. */
export interface EpochCheck {
  /** The check statement, with its `;` ('' for a session bound to no command). */
  readonly sql: string;
  /** A refusal of the check as {@link MoverSupersededError}; any other error as it is. */
  readonly map: (error: unknown) => unknown;
}

/**
 * Begins a transaction of `client` (`begin`: the statement that does, such as `begin isolation
 * level repeatable read`) with the epoch check, in one round trip. On failure the transaction is
 * rolled back (or the session dropped) and the error thrown, a refusal as
 * {@link MoverSupersededError}.
 */
export async function beginChecked(client: Client, begin = 'begin'): Promise<void> {
  const check = await epochCheck(client);
  try {
    await client.query(`${begin}; ${check.sql}`);
  } catch (error) {
    await rollbackOrDrop(client);
    throw check.map(error);
  }
}

/**
 * Runs `sql` (one statement, or several; literal values only: the simple protocol) after the epoch
 * check, as one implicit transaction in one round trip (inside an open transaction, as part of it).
 * Returns the last statement's result; a refusal throws {@link MoverSupersededError}.
 */
export async function queryChecked<R extends Record<string, unknown> = Record<string, unknown>>(client: Client, sql: string): Promise<QueryResult<R>> {
  const check = await epochCheck(client);
  try {
    const result = (await client.query(`${check.sql} ${sql}`)) as unknown as QueryResult<R> | QueryResult<R>[];
    return Array.isArray(result) ? result.at(-1)! : result;
  } catch (error) {
    throw check.map(error);
  }
}
