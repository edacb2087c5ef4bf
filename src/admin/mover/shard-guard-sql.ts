/**
 * What the mover installs on every shard so that PostgreSQL itself keeps slot moves exact against
 * routers it cannot trust (stale, or not following the catalog at all):
 *
 * - `kysely_scale.shard_guard` (one row): the oldest topology version a versioned session may route
 *   by here (`required_version`), and `hidden`, the slots whose rows here app reads must not see
 *   (copies arriving on a target; rows left on a source after cutover until they are cleaned up).
 * - two row-security policies on each sharded table: a restrictive one whose
 *   `kysely_scale.version_gate()` runs once while each statement is planned (even a read that
 *   matches no row) and raises {@link STALE_TOPOLOGY_SQLSTATE} for a stale session; and a
 *   permissive one whose `kysely_scale.hidden_slots()`, also evaluated while planning, is null
 *   unless some slot is hidden, so the check folds away and the per-row slot check
 *   (`get_bit(hidden, kysely_scale_slot(key))`) only runs on a shard that has hidden rows.
 *   Statements are planned for each execution (node-postgres sends unnamed statements); a plan
 *   cached across executions (a named prepared statement, PL/pgSQL) keeps what its planning saw.
 * - a statement-level trigger on each sharded table that checks the version for every write
 *   (triggers fire for superusers too, row security does not).
 * - during a move, on the source: a row trigger that logs the keys written in moving slots
 *   (`kysely_scale.change_log`, read by catch-up) and refuses writes to fenced slots with
 *   {@link SLOT_FENCED_SQLSTATE}. `kysely_scale.slot_move` says which slots move and until when
 *   they are fenced (one row per move, at a negative slot, holds its fence); a fence whose time
 *   passed no longer refuses (a dead mover's fence expires).
 *
 * Mover sessions set `kysely_scale.bypass = on`: they see every row and write through fences.
 */
import { SLOT_FENCED_SQLSTATE, STALE_TOPOLOGY_SQLSTATE, TOPOLOGY_VERSION_SETTING } from '../../cluster/topology-fence';

/** A sharded table: its (optionally schema-qualified) name and shard key column. */
export interface ShardedTableSpec {
  readonly name: string;
  readonly keyColumn: string;
}

/** `"schema"."table"` for `schema.table` or `table`. */
export function quoteTable(name: string): string {
  return name
    .split('.')
    .map((part) => quoteIdentifier(part))
    .join('.');
}

/** A double-quoted SQL identifier. */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A single-quoted SQL literal. */
export function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** The `kysely_scale.slot_move` row that holds the fence of move `moveId` (see slot-fence.ts): a negative slot, one per move. */
export function fenceSlot(moveId: number): number {
  return -1 - (moveId % 2147483647);
}

/** {@link fenceSlot} as SQL over a `move_id` expression (the capture trigger joins on it). */
export function fenceSlotSql(moveId: string): string {
  return `(-1 - (${moveId} % 2147483647))::int`;
}

/** The SQL twin's UUID test (`kysely_scale_slot(text)` lower-cases key text that matches it). */
const UUID_PATTERN_SQL = `'^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$'`;

/**
 * The slot of the key text `text` (an SQL expression evaluated three times: a column or a
 * variable), exactly as `kysely_scale_slot(text, slotCount)` computes it, written out for the
 * statements that run for every app write or row during a move (capture trigger, hidden-slot
 * policy). Called from them, the SQL wrapper is not inlined (its CASE is not strict while the
 * function is), so PostgreSQL set up its executor on every call: about 200 µs per write, against
 * about 80 µs for the murmur3 call itself. Parity with the wrapper is tested on real PostgreSQL.
 */
export function slotOfTextSql(text: string, slotCount: string): string {
  // Qualified (the guard installs the twin in public): the trigger and the policy run under the app session's search_path.
  return `(public.kysely_scale_murmur3(convert_to(case when ${text} ~ ${UUID_PATTERN_SQL} then lower(${text}) else ${text} end, 'UTF8')) % ${slotCount})::int`;
}

/** The shard-wide objects (idempotent). `shardId` is recorded for readable refusals. */
export function shardGuardSql(shardId: string): string {
  return `
create schema if not exists kysely_scale;
create table if not exists kysely_scale.shard_guard (
  only_row boolean primary key default true check (only_row),
  shard_id text not null,
  required_version integer not null default 0,
  hidden varbit,
  updated_at timestamptz not null default now()
);
insert into kysely_scale.shard_guard (shard_id) values (${quoteLiteral(shardId)}) on conflict (only_row) do update set shard_id = excluded.shard_id;
create table if not exists kysely_scale.slot_move (
  slot integer primary key,
  move_id bigint not null,
  next_version integer not null,
  fenced_until timestamptz
);
create table if not exists kysely_scale.change_log (
  id bigserial primary key,
  move_id bigint not null,
  tbl text not null,
  key text not null
);
grant usage on schema kysely_scale to public;
grant select on kysely_scale.shard_guard, kysely_scale.slot_move to public;
grant insert on kysely_scale.change_log to public;
grant usage on sequence kysely_scale.change_log_id_seq to public;

create or replace function kysely_scale.check_version() returns boolean
language plpgsql stable as $gate$
declare
  g record;
  v text;
begin
  if current_setting('kysely_scale.bypass', true) = 'on' then return true; end if;
  v := current_setting('${TOPOLOGY_VERSION_SETTING}', true);
  if v is null or v = '' then return true; end if;
  select shard_id, required_version into g from kysely_scale.shard_guard;
  if v::int < g.required_version then
    raise exception using errcode = '${STALE_TOPOLOGY_SQLSTATE}',
      message = format('kysely-scale: shard "%s" needs topology version %s or newer and this session routes by version %s (slots moved): reload the topology and retry', g.shard_id, g.required_version, v),
      detail = json_build_object('required', g.required_version)::text;
  end if;
  return true;
end
$gate$;

-- Declared IMMUTABLE on purpose: the planner then calls it once while planning each statement
-- (and folds it to true), so a stale session is refused even by a read that matches no row. A
-- STABLE check would run only when a row is filtered. Plans cached across executions (named
-- prepared statements, PL/pgSQL) keep the result of their planning.
create or replace function kysely_scale.version_gate() returns boolean
language plpgsql immutable as $gate$
begin
  return kysely_scale.check_version();
end
$gate$;

-- IMMUTABLE for the same reason: evaluated once while planning, so when nothing is hidden the whole
-- visibility check folds to true and costs nothing per row.
create or replace function kysely_scale.hidden_slots() returns varbit
language plpgsql immutable as $hidden$
begin
  if current_setting('kysely_scale.bypass', true) = 'on' then return null; end if;
  return (select hidden from kysely_scale.shard_guard);
end
$hidden$;

-- Also calls the slot hash once per session: its first call in a session compiles it (about a
-- millisecond), which a move's capture trigger would otherwise cost every app session of the source
-- at the same moment, just as the trigger's own first calls do.
create or replace function kysely_scale.write_gate() returns trigger
language plpgsql as $gate$
begin
  perform kysely_scale.check_version();
  if current_setting('kysely_scale.hash_ready', true) is distinct from 'on' then
    -- Best effort: a role that may not run the hash still writes (a move's capture would refuse it).
    if has_function_privilege('public.kysely_scale_murmur3(bytea)', 'execute') then
      perform public.kysely_scale_murmur3(convert_to('1234567', 'UTF8')); -- a block and a tail: every statement set up
    end if;
    perform set_config('kysely_scale.hash_ready', 'on', false);
  end if;
  return null;
end
$gate$;

-- Called by the capture triggers of earlier versions (now each trigger writes this out itself).
create or replace function kysely_scale.capture_key(tbl text, key text, slot_count integer) returns void
language plpgsql as $capture$
declare
  s integer := ${slotOfTextSql('key', 'slot_count')};
  m record;
begin
  select move_id, next_version, fenced_until into m from kysely_scale.slot_move where slot = s;
  if not found then return; end if;
  if m.fenced_until is not null and m.fenced_until > clock_timestamp() then
    raise exception using errcode = '${SLOT_FENCED_SQLSTATE}',
      message = format('kysely-scale: slot %s is being moved off this shard; writes to it wait for topology version %s', s, m.next_version),
      detail = json_build_object('slot', s, 'required', m.next_version)::text;
  end if;
  insert into kysely_scale.change_log (move_id, tbl, key) values (m.move_id, tbl, key);
end
$capture$;

create or replace function kysely_scale.refuse_truncate() returns trigger
language plpgsql as $refuse$
begin
  if current_setting('kysely_scale.bypass', true) = 'on' then return null; end if;
  if exists (select 1 from kysely_scale.slot_move) then
    raise exception using errcode = '${SLOT_FENCED_SQLSTATE}', message = 'kysely-scale: slots of this table are being moved; TRUNCATE waits until the move ends';
  end if;
  return null;
end
$refuse$;
`;
}

/** The restrictive policy that refuses a stale session's statements on table `t` (quoted), checked once per statement. */
export function versionPolicySql(t: string): string {
  return `drop policy if exists kysely_scale_version on ${t};
create policy kysely_scale_version on ${t} as restrictive for all to public
  using (kysely_scale.version_gate())
  with check (kysely_scale.version_gate());`;
}

/** Row security and the write gate on one sharded table (idempotent; takes a brief ACCESS EXCLUSIVE lock). */
export function tableGuardSql(table: ShardedTableSpec, slotCount: number): string {
  const t = quoteTable(table.name);
  const key = `${quoteIdentifier(table.keyColumn)}::text`;
  return `
alter table ${t} enable row level security;
alter table ${t} force row level security;
drop policy if exists kysely_scale_guard on ${t};
create policy kysely_scale_guard on ${t} as permissive for all to public
  using (kysely_scale.hidden_slots() is null or get_bit(kysely_scale.hidden_slots(), ${slotOfTextSql(key, String(slotCount))}) = 0)
  with check (true);
${versionPolicySql(t)}
drop trigger if exists kysely_scale_gate on ${t};
create trigger kysely_scale_gate before insert or update or delete or truncate on ${t}
  for each statement execute function kysely_scale.write_gate();
`;
}

function captureFunction(table: ShardedTableSpec): string {
  return `kysely_scale.${quoteIdentifier(`capture:${table.name}`)}`;
}

/** Key column types whose text is never a UUID: their slot needs no case test. */
const INTEGER_KEY_TYPES = new Set(['smallint', 'integer', 'bigint']);

/**
 * The statements that capture one key (`key`: its text, an expression over OLD or NEW) in the
 * capture trigger: its slot, then, only when the slot is in `movingBits` (every slot in
 * `kysely_scale.slot_move` when the trigger was installed), the fence check and the change-log
 * entry. A write outside the moving slots costs one slot computation and nothing else.
 */
function captureKeySql(table: ShardedTableSpec & { readonly keyType?: string }, key: string, slotCount: number, movingBits: string): string {
  const slot = table.keyType !== undefined && INTEGER_KEY_TYPES.has(table.keyType) ? `(public.kysely_scale_murmur3(convert_to(${key}, 'UTF8')) % ${slotCount})::int` : slotOfTextSql(key, String(slotCount));
  return `
    s := ${slot};
    if get_bit(${movingBits}::varbit, s) = 1 then
      select move_id, next_version, fenced_until into m from kysely_scale.slot_move where slot = s;
      if found then
        -- The move's fence row: a second lookup, not a join (each session plans it in half the time,
        -- and it runs faster); read after the slot's row, so it is at least as recent as that.
        select next_version, fenced_until into f from kysely_scale.slot_move where slot = ${fenceSlotSql('m.move_id')} and move_id = m.move_id;
        if found then
          m.next_version := greatest(m.next_version, f.next_version);
          m.fenced_until := greatest(m.fenced_until, f.fenced_until);
        end if;
        if m.fenced_until is not null and m.fenced_until > clock_timestamp() then
          raise exception using errcode = '${SLOT_FENCED_SQLSTATE}',
            message = format('kysely-scale: slot %s is being moved off this shard; writes to it wait for topology version %s', s, m.next_version),
            detail = json_build_object('slot', s, 'required', m.next_version)::text;
        end if;
        insert into kysely_scale.change_log (move_id, tbl, key) values (m.move_id, ${quoteLiteral(table.name)}, ${key});
      end if;
    end if;`;
}

/**
 * The change-capture and fence trigger of one table on a move's source (idempotent). `movingSlots`
 * are the slots of `kysely_scale.slot_move` (of every move on this source): the trigger skips the
 * fence and log lookups for a key in any other slot. Its install ({@link installCapture}) checks,
 * in the same transaction, that `slot_move` holds no slot outside them (a test that cannot go
 * stale: slots are added to `slot_move` only before this trigger is installed again, and removing
 * one only makes the set larger than needed). Everything is written out in the trigger (no nested
 * function call but the hash): it runs for every app write to the table during a move.
 */
export function captureTriggerSql(table: ShardedTableSpec & { readonly keyType?: string }, slotCount: number, movingSlots: Iterable<number>, present?: CaptureTriggersPresent): string {
  const t = quoteTable(table.name);
  const k = quoteIdentifier(table.keyColumn);
  const bits = slotBitsLiteral(movingSlots, slotCount);
  return `
do $check$ begin
  if exists (select 1 from kysely_scale.slot_move where slot >= ${slotCount} or (slot >= 0 and get_bit(${bits}::varbit, slot) = 0)) then
    raise exception 'kysely-scale: kysely_scale.slot_move changed while its capture trigger was written; install it again';
  end if;
end $check$;
create or replace function ${captureFunction(table)}() returns trigger
language plpgsql as $capture$
declare
  s integer;
  m record;
  f record;
begin
  if current_setting('kysely_scale.bypass', true) = 'on' then
    if TG_OP = 'DELETE' then return OLD; end if;
    return NEW;
  end if;
  if TG_OP = 'UPDATE' or TG_OP = 'DELETE' then
    if OLD.${k} is not null then${captureKeySql(table, `OLD.${k}::text`, slotCount, bits)}
    end if;
  end if;
  if (TG_OP = 'INSERT' or (TG_OP = 'UPDATE' and NEW.${k} is distinct from OLD.${k})) and NEW.${k} is not null then${captureKeySql(table, `NEW.${k}::text`, slotCount, bits)}
  end if;
  if TG_OP = 'DELETE' then return OLD; end if;
  return NEW;
end
$capture$;
${present?.capture === true ? '' : `${present === undefined ? `drop trigger if exists zz_kysely_scale_capture on ${t};
` : ''}create trigger zz_kysely_scale_capture before insert or update or delete on ${t}
  for each row execute function ${captureFunction(table)}();`}
${present?.truncate === true ? '' : `${present === undefined ? `drop trigger if exists kysely_scale_truncate on ${t};
` : ''}create trigger kysely_scale_truncate before truncate on ${t}
  for each statement execute function kysely_scale.refuse_truncate();`}
`;
}

/**
 * Which capture triggers a table already has ({@link captureTriggerSql}). Given, the SQL creates
 * only the missing ones, with no `drop trigger` (which locks the table against reads too, even when
 * there is nothing to drop), and replacing only the function takes no lock on the table at all.
 * Not given, it drops and creates both (idempotent whatever is there).
 */
export interface CaptureTriggersPresent {
  readonly capture: boolean;
  readonly truncate: boolean;
}

/** Removes the capture trigger of one table (idempotent). */
export function dropCaptureSql(table: ShardedTableSpec): string {
  const t = quoteTable(table.name);
  return `
drop trigger if exists zz_kysely_scale_capture on ${t};
drop trigger if exists kysely_scale_truncate on ${t};
drop function if exists ${captureFunction(table)}();
`;
}

/** The varbit literal of a set of slots: bit `s` (from the left) is 1 when slot `s` is in the set. */
export function slotBitsLiteral(slots: Iterable<number>, slotCount: number): string {
  const bits = new Uint8Array(slotCount);
  for (const s of slots) bits[s] = 1;
  return `B'${Array.from(bits, (b) => (b === 1 ? '1' : '0')).join('')}'`;
}

/** A SQL predicate true for rows of `table` whose slot is in `bitsLiteral`. */
export function slotFilterSql(table: ShardedTableSpec, bitsLiteral: string, slotCount: number): string {
  return `get_bit(${bitsLiteral}::varbit, kysely_scale_slot(${quoteIdentifier(table.keyColumn)}::text, ${slotCount})) = 1`;
}
