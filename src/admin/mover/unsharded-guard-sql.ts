/**
 * What a drain installs on the shard holding the unsharded tables before it moves them, so that
 * PostgreSQL keeps routers it cannot trust off the old copies, as it does for slots:
 *
 * - `kysely_scale.unsharded_fence` (at most one row): while `fenced_until` is in the future, every
 *   write to the unsharded tables is refused with {@link SLOT_FENCED_SQLSTATE} (`KS002`, detail
 *   `{"required": <version>}`): the dialect reloads the topology until that version, which names
 *   the new holder, and runs the statement once more there. A fence whose time passed refuses
 *   nothing (a dead mover's fence expires); after the switch it is `infinity` until clean-up.
 * - on each unsharded table of the source: a statement trigger (`kysely_scale_unsharded_gate`)
 *   that checks the session's topology version (`kysely_scale.check_version()`, `KS001`) and the
 *   fence for every write, and the restrictive row-security policy `kysely_scale_version` (the
 *   slot guard's `kysely_scale.version_gate()`, evaluated once while each statement is planned) so
 *   a stale router's reads are refused too once the source requires the new version. Row security
 *   is enabled (with a permissive `using (true)` policy, and forced for the owner) only on tables
 *   that had it off: a table with policies of its own keeps them, and only gains the restrictive one.
 *
 * Depends on the slot guard's functions (`installGuard` runs on every shard before a move).
 * Mover sessions (`kysely_scale.bypass = on`) pass every check.
 */
import { SLOT_FENCED_SQLSTATE } from '../../cluster/topology-fence';
import { quoteTable, versionPolicySql } from './shard-guard-sql';

/** The fence table and the gate function (idempotent). */
export const UNSHARDED_FENCE_SQL = `
create table if not exists kysely_scale.unsharded_fence (
  only_row boolean primary key default true check (only_row),
  move_id bigint not null,
  next_version integer not null,
  fenced_until timestamptz
);
grant select on kysely_scale.unsharded_fence to public;

create or replace function kysely_scale.unsharded_gate() returns trigger
language plpgsql as $gate$
declare
  f record;
begin
  if current_setting('kysely_scale.bypass', true) = 'on' then return null; end if;
  perform kysely_scale.check_version();
  select next_version, fenced_until into f from kysely_scale.unsharded_fence;
  if found and f.fenced_until is not null and f.fenced_until > clock_timestamp() then
    raise exception using errcode = '${SLOT_FENCED_SQLSTATE}',
      message = format('kysely-scale: the unsharded tables are being moved off this shard (%s); writes wait for topology version %s', TG_TABLE_NAME, f.next_version),
      detail = json_build_object('required', f.next_version)::text;
  end if;
  return null;
end
$gate$;
`;

/** The gate trigger and version policy of one unsharded table; `enableRowSecurity` when the table had row security off. */
export function unshardedTableGuardSql(table: string, enableRowSecurity: boolean): string {
  const t = quoteTable(table);
  return `
${
  enableRowSecurity
    ? `alter table ${t} enable row level security;
alter table ${t} force row level security;
drop policy if exists kysely_scale_unsharded on ${t};
create policy kysely_scale_unsharded on ${t} as permissive for all to public using (true) with check (true);`
    : ''
}
${versionPolicySql(t)}
drop trigger if exists kysely_scale_unsharded_gate on ${t};
create trigger kysely_scale_unsharded_gate before insert or update or delete or truncate on ${t}
  for each statement execute function kysely_scale.unsharded_gate();
`;
}

/** Whether `table` has its gate trigger and version policy (0 or 2 of them counted). */
export const UNSHARDED_GUARD_PRESENT_SQL = `select (select count(*) from pg_policy where polrelid = to_regclass($1) and polname = 'kysely_scale_version')::int
  + (select count(*) from pg_trigger where tgrelid = to_regclass($1) and tgname = 'kysely_scale_unsharded_gate')::int as n,
  (select relrowsecurity from pg_class where oid = to_regclass($1)) as rls`;
