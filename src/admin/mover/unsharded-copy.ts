/**
 * The data side of a drain's unsharded step: what is copied and how, checked, and the sequences
 * moved up.
 *
 * - Each table is copied with an explicit column list, the same on both sides, without generated
 *   columns (the target computes them; COPY refuses values for them) and dropped ones; a table with
 *   inheritance children is read with `only` (the children are unsharded tables of their own and
 *   are copied as such), a partitioned table whole (its partitions are not listed).
 * - The target's transaction (copy, and clearing a copy) runs with
 *   `session_replication_role = replica`, so the target's foreign keys and user triggers do not
 *   fire: the rows were checked by the source's when written, tables are copied in name order
 *   (a referencing table may come before the one it references), and an audit trigger must not
 *   write its rows a second time. That needs a superuser mover, or (PostgreSQL 15+)
 *   `grant set on parameter session_replication_role`; without it the copy runs with them firing.
 * - Sequences moved up on the target: those owned by a column of a moved table (serial, identity)
 *   and those a column default of a moved table names (`default nextval('s')`), each once.
 */
import type { Client } from 'pg';
import type { Clock } from '../../kernel/clock';
import { quoteLiteral, quoteTable } from './shard-guard-sql';
import { beginChecked, queryChecked } from './mover-epoch';
import { CopyThrottle } from './copy-throttle';
import { copyIn, copyOut } from './copy-out';
import { rollbackOrDrop } from './shard-session';

/** How one table is read on the source and written on the target. */
export interface CopyShape {
  readonly table: string;
  /** `only "s"."t"` for a plain table, `"s"."t"` for a partitioned one. */
  readonly from: string;
  /** The copied columns, quoted and comma-separated (empty for a table without any). */
  readonly columns: string;
}

/** The copy shape of every table (looked up on the source before the fence, one round trip). */
export async function copyShapes(source: Client, tables: readonly string[]): Promise<CopyShape[]> {
  const { rows } = await source.query<{ ord: string; kind: string; cols: string }>(
    `select t.ord::text as ord, c.relkind::text as kind,
            coalesce(string_agg(quote_ident(a.attname::text), ', ' order by a.attnum), '') as cols
       from unnest($1::text[]) with ordinality t(name, ord)
       join pg_class c on c.oid = to_regclass(t.name)
       left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
      group by t.ord, c.relkind order by t.ord`,
    [tables.map(quoteTable)],
  );
  return rows.map((r) => {
    const table = tables[Number(r.ord) - 1]!;
    return Object.freeze({ table, from: `${r.kind === 'p' ? '' : 'only '}${quoteTable(table)}`, columns: r.cols });
  });
}

/** Whether `client` may set `session_replication_role` (a superuser, or granted SET on it on PostgreSQL 15+). */
export async function maySkipTriggers(client: Client): Promise<boolean> {
  const { rows } = await client.query<{ su: string; v: string }>(`select current_setting('is_superuser') as su, current_setting('server_version_num') as v`);
  if (rows[0]?.su === 'on') return true;
  if (Number(rows[0]?.v ?? 0) < 150000) return false;
  const granted = await client.query<{ ok: boolean }>(`select has_parameter_privilege('session_replication_role', 'SET') as ok`);
  return granted.rows[0]?.ok === true;
}

/** Begins a target transaction that fires no foreign key or user trigger when allowed. */
async function beginQuiet(target: Client, skipTriggers: boolean): Promise<void> {
  // The command's epoch is checked first (mover-epoch.ts); the setting rides in the same message.
  await beginChecked(target, skipTriggers ? 'begin; set local session_replication_role = replica' : 'begin');
}

/**
 * Copies every table in one target transaction (its rows of them deleted first); returns the rows
 * copied. `signal` (the command's stop signal: its operator lock was lost) stops a table's stream
 * at once, failing with its reason: the source's session is dropped and the target's transaction
 * rolled back, so nothing of the copy stays on the target.
 */
export async function copyTables(
  source: Client,
  target: Client,
  shapes: readonly CopyShape[],
  skipTriggers: boolean,
  clock: Clock,
  onRows: (total: number) => void,
  signal?: AbortSignal,
): Promise<number> {
  let total = 0;
  await beginQuiet(target, skipTriggers);
  try {
    for (const shape of shapes) await target.query(`delete from ${shape.from}`);
    for (const shape of shapes) {
      // Under the fence: not throttled, not paced (writers of these tables are waiting).
      const throttle = new CopyThrottle(clock, undefined, (n) => onRows((total += n)));
      const list = shape.columns === '' ? '' : ` (${shape.columns})`;
      const into = copyIn(target, `copy ${quoteTable(shape.table)}${list} from stdin`);
      await copyOut(source, `copy (select ${shape.columns} from ${shape.from}) to stdout`, [throttle, into], undefined, signal);
    }
    await target.query('commit');
  } catch (error) {
    await rollbackOrDrop(target, clock);
    throw error;
  }
  return total;
}

/** Deletes the target's rows of the tables (its copies were empty when the move was planned). */
export async function clearTables(target: Client, shapes: readonly CopyShape[], skipTriggers: boolean): Promise<void> {
  await beginQuiet(target, skipTriggers);
  try {
    for (const shape of shapes) await target.query(`delete from ${shape.from}`);
    await target.query('commit');
  } catch (error) {
    await rollbackOrDrop(target);
    throw error;
  }
}

/** Counts and checksums of every table on both sides, as readable differences. */
export async function compareTables(source: Client, target: Client, shapes: readonly CopyShape[], names: { source: string; target: string }): Promise<string[]> {
  const out: string[] = [];
  for (const shape of shapes) {
    const sql = `select count(*)::text as n, coalesce(sum(hashtextextended(x::text, 0)), 0)::text as h from ${shape.from} x`;
    const [a, b] = await Promise.all([source.query<{ n: string; h: string }>(sql), target.query<{ n: string; h: string }>(sql)]);
    const [s, t] = [a.rows[0]!, b.rows[0]!];
    if (s.n !== t.n || s.h !== t.h) out.push(`${shape.table}: source "${names.source}" ${s.n} rows (checksum ${s.h}), target "${names.target}" ${t.n} rows (checksum ${t.h})`);
  }
  return out;
}

/** A sequence of the moved tables, on the source and on the target. */
export interface SequencePair {
  readonly source: string;
  readonly target: string;
}

/** Per table and column: the sequences it owns (serial, identity) or its default names (`nextval('s')`). */
const COLUMN_SEQUENCES_SQL = `
select t.name, a.attname::text as col, s.oid::regclass::text as seq
  from unnest($1::text[]) t(name)
  join pg_attribute a on a.attrelid = to_regclass(t.name) and a.attnum > 0 and not a.attisdropped
  join lateral (
    select d.objid as seq from pg_depend d
     where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
       and d.refobjid = a.attrelid and d.refobjsubid = a.attnum and d.deptype in ('a', 'i')
    union
    select d.refobjid from pg_attrdef ad
      join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid and d.refclassid = 'pg_class'::regclass
     where ad.adrelid = a.attrelid and ad.adnum = a.attnum
  ) x on true
  join pg_class s on s.oid = x.seq and s.relkind = 'S'
 order by 1, 2, 3`;

/** The sequences of the tables' columns on both sides, paired by table and column, each source sequence once (looked up before the fence). */
export async function sequencesOf(source: Client, target: Client, tables: readonly string[]): Promise<SequencePair[]> {
  const names = tables.map(quoteTable);
  const [a, b] = await Promise.all([source.query<{ name: string; col: string; seq: string }>(COLUMN_SEQUENCES_SQL, [names]), target.query<{ name: string; col: string; seq: string }>(COLUMN_SEQUENCES_SQL, [names])]);
  const there = new Map<string, string[]>();
  for (const r of b.rows) there.set(`${r.name}\u0000${r.col}`, [...(there.get(`${r.name}\u0000${r.col}`) ?? []), r.seq]);
  const out = new Map<string, SequencePair>();
  for (const r of a.rows) {
    const candidates = there.get(`${r.name}\u0000${r.col}`) ?? [];
    // The same name on the target when the column has it; else its only sequence (an identity sequence may be named otherwise there).
    const match = candidates.includes(r.seq) ? r.seq : candidates.length === 1 ? candidates[0] : undefined;
    if (match !== undefined && !out.has(r.seq)) out.set(r.seq, Object.freeze({ source: r.seq, target: match }));
  }
  return [...out.values()];
}

/** Moves each sequence on the target up to the source's last value (ids keep growing on the new holder); one round trip per side. */
export async function syncSequences(source: Client, target: Client, sequences: readonly SequencePair[]): Promise<void> {
  if (sequences.length === 0) return;
  const { rows } = await source.query<{ last: string | null }>('select pg_sequence_last_value(s::regclass)::text as last from unnest($1::text[]) with ordinality u(s, o) order by o', [sequences.map((s) => s.source)]);
  const pairs = sequences.map((s, i) => ({ target: s.target, last: rows[i]?.last ?? null })).filter((p) => p.last !== null);
  if (pairs.length === 0) return; // never used
  // setval is not transactional: the epoch check comes first in the same message, so a refused check sets nothing.
  const names = pairs.map((p) => quoteLiteral(p.target)).join(', ');
  const lasts = pairs.map((p) => quoteLiteral(p.last!)).join(', ');
  await queryChecked(
    target,
    `select setval(s::regclass, greatest(l::bigint, coalesce(pg_sequence_last_value(s::regclass), l::bigint)), true) from unnest(array[${names}]::text[], array[${lasts}]::text[]) u(s, l)`,
  );
}
