/**
 * Row estimates of a table for a move's plan, and of a shard's user tables for `status`: the
 * density of live rows in a sample of the tables' pages now times their size in pages now. That
 * is the formula of PostgreSQL's planner (`table_block_relation_estimate_size`: density × current
 * pages) with the density ANALYZE would measure today instead of the one `pg_class` kept from the
 * last ANALYZE, which a move makes stale: density × current pages does count rows a move copied
 * into its target, but not the rows its clean-up deleted from the source (their pages stay until a
 * vacuum), and the cumulative statistics' `n_live_tup` drifts (a backend's counts flushed after an
 * ANALYZE are counted twice). Tables within the budget of pages are counted (an exact figure;
 * tables never analysed need no statistics); a larger one is sampled: its live rows in the pages
 * read, per page read, times its pages. The pages read are a known number, in up to 256 ranges
 * spread evenly over the table (TID range scans, PostgreSQL 14+; the same pages each time, so a
 * figure does not jitter between calls); a table that cannot be read by ranges (another storage
 * method, an older server) is sampled with `TABLESAMPLE SYSTEM` (about that many pages, at random)
 * and its rows scaled by the share read. Each table is scaled by its own density: a shard's dense
 * small tables and sparse large ones do not blur into one average. A partitioned or inherited
 * table is the sum of its partitions or children, the pages shared among them; of many tables, the
 * {@link MAX_SAMPLED_TABLES} largest are sampled and the others counted by their statistics.
 *
 * A move's plan reads while the app runs, so it is paced like the move's scans: one statement per
 * range of at most {@link RANGE_PAGES} pages (a counted table is read in such ranges too), each
 * followed by the move's nice-ratio pause: read in one statement, up to 2,000 pages of each table
 * on each source and target were one burst of shard work, unpaced, while the app writes. No lock
 * is held between its ranges, so each table is followed by its oid: renamed meanwhile, it is read
 * under its new name; dropped, it counts no row.
 */
import type { QueryResult, QueryResultRow } from 'pg';
import { quoteLiteral, quoteTable } from './shard-guard-sql';
import { yieldAfter, type ScanPace } from './scan-pacer';

/** About how many pages a plan's estimate reads per table (16 MB of 8 kB pages); a smaller table is counted. */
export const SAMPLE_PAGES = 2000;

/**
 * How long a plan's estimate waits for the table's `ACCESS SHARE` lock (its size and the sample
 * take one); past it (a migration's `ACCESS EXCLUSIVE` holds or awaits it) the estimate is
 * `pg_class.reltuples` as it is, and the copy reports the lock if it still waits. So it is when a
 * table cannot be read (no privilege) or the server cancels the sample (`statement_timeout`).
 */
export const ESTIMATE_LOCK_TIMEOUT_MILLIS = 1000;

/** What the estimate runs its statements on (a pg `Client`, or an operator command's session). */
export interface EstimateQueries {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/**
 * The table `root` (SQL of its oid) and its partitions and inheritance children, read without
 * taking a lock; not a partition being detached (`DETACH PARTITION … CONCURRENTLY`, PostgreSQL
 * 14+: queries of the table no longer read it; read through `to_jsonb`, since older servers lack
 * the column).
 */
const treeSql = (root: string): string => `with recursive tree(oid) as (
  select ${root} union all select i.inhrelid from pg_inherits i join tree on i.inhparent = tree.oid
   where not coalesce((to_jsonb(i) ->> 'inhdetachpending')::boolean, false)
) select oid from tree where oid is not null`;

/** Every user table of the database (what `status` counts): not PostgreSQL's, not kysely-scale's. */
const USER_TABLES_SQL = `select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where n.nspname not in ('pg_catalog', 'information_schema', 'kysely_scale') and n.nspname not like 'pg\\_%'`;

/** How many pages an estimate reads, and how long it waits for a table's lock. */
interface Budget {
  /** About how many pages to read in all, shared among the tables in proportion to their sizes (at least a page each). */
  readonly pages: number;
  readonly lockTimeoutMillis: number;
  /** Paced: one statement per range, each followed by its pause; else one statement for all. */
  readonly pace?: ScanPace;
  /** Paced: a query (no parameters) of the oids of the tables estimated now; a leaf no longer among them counts no row. */
  readonly members?: string;
}

/**
 * Most tables (partitions, children) one estimate samples, the largest by `pg_class.relpages`; the
 * others count with their statistics (`reltuples`). Each sampled table takes a lock (its size) and a
 * branch of the statement: thousands of partitions read each made one estimate take thousands of
 * locks and, past about 5,000, fail the statement (out of shared memory, stack depth).
 */
export const MAX_SAMPLED_TABLES = 64;

/** Rows a page, to rank tables whose `relpages` is not yet known (never vacuumed nor analysed) by their rows instead: an order, not a figure. */
const ROWS_PER_PAGE_GUESS = 50;

/** Most page ranges one unpaced estimate's statement reads, over all its tables (its `union all` branches). */
const MAX_BRANCHES = 256;

/** Most pages one statement of a paced estimate reads (1 MB: a few milliseconds of a shard's work, as a slice of the move's scans). */
export const RANGE_PAGES = 128;

/**
 * Estimated rows of `table` (as registered: `name` or `schema.name`) on `client`'s shard; with
 * `pace`, read in ranges of at most {@link RANGE_PAGES} pages, each followed by its pause.
 */
export async function estimateTableRows(client: EstimateQueries, table: string, pace?: ScanPace): Promise<number> {
  const tree = treeSql('to_regclass($1)::oid');
  if (pace === undefined) return estimate(client, tree, [quoteTable(table)], { pages: SAMPLE_PAGES, lockTimeoutMillis: ESTIMATE_LOCK_TIMEOUT_MILLIS });
  // Paced, no lock holds the tree between ranges: each range checks its leaf is still in it (a
  // partition detached meanwhile counts none), from the root's oid, as the leaves are followed
  // (a table renamed meanwhile keeps its tree: review 66).
  const { rows } = await client.query<{ oid: string | null }>('select to_regclass($1)::oid::text as oid', [quoteTable(table)]);
  const root = rows[0]?.oid;
  return estimate(client, tree, [quoteTable(table)], { pages: SAMPLE_PAGES, lockTimeoutMillis: ESTIMATE_LOCK_TIMEOUT_MILLIS, pace, members: treeSql(root == null ? 'null::oid' : `${Number(root)}::oid`) });
}

/**
 * Estimated rows of every user table of `client`'s database (outside `pg_catalog`,
 * `information_schema`, `pg_*` and `kysely_scale`), reading about `samplePages` pages in all,
 * whatever the size of the tables (at least a page per table): a database of at most that many
 * pages is counted, a larger one sampled (the pages shared among its tables in proportion to
 * their sizes); none when `samplePages` is 0 (the statistics only). A table locked for more than
 * `lockTimeoutMillis` (or one the role may not read) makes the whole figure the statistics'
 * (`reltuples`).
 */
export function estimateDatabaseRows(client: EstimateQueries, samplePages: number, lockTimeoutMillis: number): Promise<number> {
  if (samplePages <= 0) return statisticsOnly(client, USER_TABLES_SQL, []);
  return estimate(client, USER_TABLES_SQL, [], { pages: samplePages, lockTimeoutMillis });
}

/**
 * A table's rows by the statistics alone (table `c` of `pg_class`; no lock): `reltuples`, or,
 * until the first VACUUM or ANALYZE gives it (-1 until then: a table a move's COPY just filled
 * would count as empty), the cumulative statistics' live rows.
 */
const STATISTICS_ROWS_SQL = 'case when c.reltuples < 0 then pg_stat_get_live_tuples(c.oid) else c.reltuples end';

/** An expression: the statistics' rows (`reltuples`) of every user table of the database, read from the catalog alone (no table lock). */
export const DATABASE_STATISTICS_SQL = `(select coalesce(sum(${STATISTICS_ROWS_SQL}), 0)::float8 from (${USER_TABLES_SQL}) tables join pg_class c on c.oid = tables.oid where c.relkind = 'r')`;

async function estimate(client: EstimateQueries, tablesSql: string, values: unknown[], budget: Budget): Promise<number> {
  // TID range scans even where the shard or role turned them off (each range would be a full scan).
  const setup = `begin isolation level read committed read only; set local lock_timeout = '${Math.max(1, Math.round(budget.lockTimeoutMillis))}ms'; set local enable_tidscan = on`;
  try {
    // Without parameters (status), the set-up and the tables' sizes go in one round trip.
    const leaves = values.length === 0 ? lastResult(await client.query<Leaf>(`${setup}; ${leavesSql(tablesSql)}`)).rows : (await client.query(setup), (await client.query<Leaf>(leavesSql(tablesSql), values)).rows);
    const sampled = leaves.filter((leaf): leaf is SizedLeaf => leaf.pages !== null && leaf.pages > 0);
    const all = sampled.reduce((n, leaf) => n + leaf.pages, 0);
    const allotted = (leaf: SizedLeaf): number => (all <= budget.pages ? leaf.pages : Math.max(1, Math.round((budget.pages * leaf.pages) / all)));
    const runs = Math.max(1, Math.min(SAMPLE_RANGES, Math.floor(MAX_BRANCHES / Math.max(1, sampled.length))));
    const plans = sampled.map((leaf) => samplePlan(leaf, allotted(leaf), budget.pace === undefined ? undefined : RANGE_PAGES, runs));
    let found: (number | null)[];
    if (budget.pace === undefined) {
      found = await sampledRows(client, plans);
      await client.query('commit');
    } else {
      // Paced, the tables' locks are not held across the pauses (a migration queued behind one
      // would queue the app's writes behind it): the sizes' transaction ends here and each range
      // is read in a transaction of its own, under the same lock timeout.
      await client.query('commit');
      found = await pacedRows(client, sampled, plans, budget.pace, setup, budget.members);
    }
    // A sample that found no row of a table the statistics say has some (its live rows all in pages
    // between the ranges read: a large delete that left a cluster) takes the statistics' live count;
    // a table dropped while it was read (null) counts none: its rows are gone.
    const rows = sampled.reduce((n, leaf, i) => n + (found[i] === null ? 0 : found[i] === 0 && plans[i]!.scale > 1 ? leaf.live : found[i]! * plans[i]!.scale), 0);
    const unsampled = leaves.filter((leaf) => leaf.pages === null).reduce((n, leaf) => n + leaf.reltuples, 0);
    return Math.round(rows + unsampled);
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    if (!UNREADABLE_NOW.has((error as { code?: unknown }).code)) throw error;
    return statisticsOnly(client, tablesSql, values);
  }
}

/**
 * The leaf tables of `tablesSql` with their statistics; the {@link MAX_SAMPLED_TABLES} largest (by
 * `relpages`, or their live and dead rows at {@link ROWS_PER_PAGE_GUESS} a page when that is more:
 * `relpages` is 0 until the first VACUUM or ANALYZE) not locked in `ACCESS EXCLUSIVE` mode (a migration's: their statistics stand in)
 * also with their size in pages now, which takes their `ACCESS SHARE` lock, kept to the end (their
 * pages stay as counted); the others with `pages` null (no lock taken).
 */
function leavesSql(tablesSql: string): string {
  return `with leaves as (
      select c.oid, c.oid::int8::float8 as relid, c.oid::regclass::text as name, (${STATISTICS_ROWS_SQL})::float8 as reltuples, pg_stat_get_live_tuples(c.oid)::float8 as live,
             current_setting('server_version_num')::int >= 140000 and a.amname = 'heap' as ranged,
             row_number() over (order by greatest(c.relpages, (pg_stat_get_live_tuples(c.oid) + pg_stat_get_dead_tuples(c.oid)) / ${ROWS_PER_PAGE_GUESS}) desc, c.oid) as rank,
             exists (select 1 from pg_locks l where l.locktype = 'relation' and l.relation = c.oid and l.mode = 'AccessExclusiveLock'
                       and l.database = (select oid from pg_database where datname = current_database())) as locked
        from (${tablesSql}) tables join pg_class c on c.oid = tables.oid left join pg_am a on a.oid = c.relam
       where c.relkind = 'r'
    )
    select relid, name, reltuples, live, ranged,
           case when rank <= ${MAX_SAMPLED_TABLES} and not locked then (pg_relation_size(oid) / current_setting('block_size')::int)::float8 end as pages
      from leaves order by rank`;
}

/** The last statement's result of a query of several statements (pg answers one result per statement). */
function lastResult<R extends QueryResultRow>(result: QueryResult<R> | QueryResult<R>[]): QueryResult<R> {
  return Array.isArray(result) ? result[result.length - 1]! : result;
}

/** A leaf table (a table with its own pages): its quoted name, its size (null: not sampled), whether it can be read by TID ranges, its statistics. */
interface Leaf {
  /** Its oid: what names it once no lock keeps its name (a paced estimate's ranges). */
  readonly relid: number;
  readonly name: string;
  readonly pages: number | null;
  readonly ranged: boolean;
  /** The statistics' rows: `pg_class.reltuples`, or `n_live_tup` when never vacuumed nor analysed. */
  readonly reltuples: number;
  /** The cumulative statistics' live rows (`n_live_tup`). */
  readonly live: number;
}

/** A leaf to sample: its size read now. */
type SizedLeaf = Leaf & { readonly pages: number };

/** What is read of a table: the statements' `from … where …` parts, and the factor from the rows found to the table's. */
interface SamplePlan {
  readonly sources: readonly string[];
  readonly scale: number;
}

/**
 * Most page ranges of one table a sample reads (its pages spread over the table in this many
 * runs). Many short runs, not a few long ones: with 16 runs of a 5,335-page table whose live rows
 * were all in its last 2% (a large delete), the sample found none of them.
 */
const SAMPLE_RANGES = 256;

/**
 * How `leaf` is read with `pages` pages to spend: whole, by evenly spread ranges of pages, or by
 * `TABLESAMPLE SYSTEM`. With `rangePages`, a table read whole by TID ranges is read in ranges of
 * at most that many pages (the last one open-ended: pages added since its size was read count too).
 */
export function samplePlan(leaf: Pick<SizedLeaf, 'name' | 'ranged' | 'pages'>, pages: number, rangePages?: number, maxRuns = SAMPLE_RANGES): SamplePlan {
  const { name, pages: size } = leaf;
  if (pages >= size && leaf.ranged && rangePages !== undefined && size > rangePages) {
    const sources: string[] = [];
    for (let from = 0; from < size; from += rangePages) {
      sources.push(from + rangePages >= size ? `only ${name} where ctid >= '(${from},0)'::tid` : `only ${name} where ctid >= '(${from},0)'::tid and ctid < '(${from + rangePages},0)'::tid`);
    }
    return { sources, scale: 1 };
  }
  if (pages >= size) return { sources: [`only ${name}`], scale: 1 };
  if (!leaf.ranged) return { sources: [`only ${name} tablesample system (${(100 * pages) / size}) repeatable (0)`], scale: size / pages };
  const runs = Math.min(maxRuns, pages);
  const length = Math.floor(pages / runs);
  const stripe = size / runs;
  const sources: string[] = [];
  for (let run = 0; run < runs; run++) {
    // The middle of each of `runs` equal stripes of the table.
    const from = Math.min(size - length, Math.floor(run * stripe + (stripe - length) / 2));
    sources.push(`only ${name} where ctid >= '(${from},0)'::tid and ctid < '(${from + length},0)'::tid`);
  }
  return { sources, scale: size / (runs * length) };
}

/** Live rows each plan's ranges hold (not scaled); one statement, in the sizes' transaction (their locks keep the pages as counted). */
async function sampledRows(client: EstimateQueries, plans: readonly SamplePlan[]): Promise<number[]> {
  const found = plans.map(() => 0);
  const parts = plans.flatMap((plan, index) => plan.sources.map((from) => `select ${index} as leaf, count(*) as n from ${from}`));
  if (parts.length === 0) return found;
  const { rows } = await client.query<{ leaf: number; n: number }>(`select leaf, sum(n)::float8 as n from (${parts.join(' union all ')}) parts group by leaf`);
  for (const r of rows) found[r.leaf] = r.n;
  return found;
}

/**
 * The same as {@link sampledRows}, one range per transaction (`setup`, the count, commit: one round
 * trip), each followed by `pace`'s pause for the time it took; null for a leaf dropped meanwhile.
 * No lock is held between ranges, so a leaf is followed by its oid: each range checks that the
 * name still names it (renamed, it is read under its new name; a new table that took its name is
 * not counted), and, with `members`, that it is still among them (a partition detached meanwhile:
 * null from then on).
 */
async function pacedRows(client: EstimateQueries, leaves: readonly SizedLeaf[], plans: readonly SamplePlan[], pace: ScanPace, setup: string, members?: string): Promise<(number | null)[]> {
  const found: (number | null)[] = [];
  for (const [index, plan] of plans.entries()) {
    const leaf = { relid: leaves[index]!.relid, name: leaves[index]!.name };
    let rows: number | null = 0;
    for (const from of plan.sources) {
      const started = pace.clock.monotonicNow();
      const counted = await rangeRows(client, leaf, from.slice(`only ${leaves[index]!.name}`.length), setup, members);
      await yieldAfter(pace.clock.monotonicNow() - started, pace);
      if (counted === null) {
        rows = null;
        break;
      }
      rows += counted;
    }
    found.push(rows);
  }
  return found;
}

/** Most times one range is asked again after its leaf was renamed (then the statistics stand in). */
const RENAMED_TRIES = 3;

/**
 * Live rows of `leaf` in the range `rest` (`where …`, after `only <name>`), null when the leaf was
 * dropped or is no longer among `members`. The count and the check that its name names the leaf
 * (`relid`) are one statement: the count's lock keeps the name from changing between them. A name that no longer names it (42P01,
 * or another table took it) is looked up again by its oid.
 */
async function rangeRows(client: EstimateQueries, leaf: { readonly relid: number; name: string }, rest: string, setup: string, members?: string): Promise<number | null> {
  let missing: unknown;
  for (let tries = 0; tries < RENAMED_TRIES; tries++) {
    try {
      const member = members === undefined ? 'true' : `${leaf.relid}::oid in (${members})`;
      const sql = `${setup}; select count(*)::float8 as n, ${quoteLiteral(leaf.name)}::regclass::oid = ${leaf.relid}::oid as same, ${member} as member from only ${leaf.name}${rest}; commit`;
      type Row = { n: number; same: boolean; member: boolean };
      const results = await client.query<Row>(sql);
      const row = (Array.isArray(results) ? (results as QueryResult<Row>[]).at(-2)! : results).rows[0];
      if (row?.same === true) return row.member ? row.n : null;
    } catch (error) {
      if ((error as { code?: unknown }).code !== UNDEFINED_TABLE) throw error;
      missing = error;
      await client.query('rollback');
    }
    const { rows } = await client.query<{ name: string }>('select oid::regclass::text as name from pg_class where oid = $1', [leaf.relid]);
    if (rows[0] === undefined) return null;
    leaf.name = rows[0].name;
  }
  throw missing ?? Object.assign(new Error(`the table ${leaf.name} was renamed ${RENAMED_TRIES} times while its rows were estimated`), { code: UNDEFINED_TABLE });
}

const UNDEFINED_TABLE = '42P01';

/**
 * The tables cannot be read now, so the statistics stand in: a lock held past the lock timeout
 * (55P03), a table the role may not read (42501), a statement past the session's
 * `statement_timeout` (57014: the server is too busy for a sample now), a server short of lock
 * memory (53200) or of stack for the statement (54001), a table renamed again at every range it
 * was read (42P01: the ranges of a paced estimate hold no lock between them).
 */
const UNREADABLE_NOW: ReadonlySet<unknown> = new Set(['55P03', '42501', '57014', '53200', '54001', UNDEFINED_TABLE]);

/** `reltuples` of the tables (taking no lock), when one is locked. */
async function statisticsOnly(client: EstimateQueries, tablesSql: string, values: unknown[]): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `select coalesce(sum(${STATISTICS_ROWS_SQL}), 0)::float8 as n from (${tablesSql}) tables join pg_class c on c.oid = tables.oid where c.relkind = 'r'`,
    values,
  );
  return Math.round(rows[0]?.n ?? 0);
}
