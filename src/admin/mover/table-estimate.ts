/**
 * Row estimates of a table for a move's plan: the density of live rows in a sample of the table's
 * pages now times its size in pages now. That is the formula of PostgreSQL's planner
 * (`table_block_relation_estimate_size`: density × current pages) with the density ANALYZE would
 * measure today instead of the one `pg_class` kept from the last ANALYZE, which a move makes
 * stale: density × current pages does count rows a move copied into its target, but not the rows
 * its clean-up deleted from the source (their pages stay until a vacuum), and the cumulative
 * statistics' `n_live_tup` drifts (a backend's counts flushed after an ANALYZE are counted twice).
 * A table of at most {@link SAMPLE_PAGES} pages is counted (an exact figure; tables never
 * analysed need no statistics); a larger one is sampled (`TABLESAMPLE SYSTEM`: about that many
 * pages, read at random). A partitioned or inherited table is the sum of its partitions or children.
 */
import type { Client } from 'pg';
import { quoteTable } from './shard-guard-sql';

/** About how many pages the estimate reads per table (16 MB of 8 kB pages); a smaller table is counted. */
export const SAMPLE_PAGES = 2000;

/**
 * How long the estimate waits for the table's `ACCESS SHARE` lock (its size and the sample take
 * one); past it (a migration's `ACCESS EXCLUSIVE` holds or awaits it) the estimate is
 * `pg_class.reltuples` as it is, and the copy reports the lock if it still waits.
 */
export const ESTIMATE_LOCK_TIMEOUT_MILLIS = 1000;

/** The table `$1` names and its partitions and inheritance children, read without taking a lock. */
const TREE_SQL = `with recursive tree(oid) as (
  select to_regclass($1)::oid union all select i.inhrelid from pg_inherits i join tree on i.inhparent = tree.oid
) select oid from tree where oid is not null`;

/** Estimated rows of `table` (as registered: `name` or `schema.name`) on `client`'s shard. */
export async function estimateTableRows(client: Client, table: string): Promise<number> {
  await client.query('begin isolation level read committed read only');
  try {
    await client.query(`set local lock_timeout = '${ESTIMATE_LOCK_TIMEOUT_MILLIS}ms'`);
    const { rows } = await client.query<{ name: string; pages: number }>(
      `select c.oid::regclass::text as name, (pg_relation_size(c.oid) / current_setting('block_size')::int)::float8 as pages
         from (${TREE_SQL}) tree join pg_class c on c.oid = tree.oid
        where c.relkind = 'r'`,
      [quoteTable(table)],
    );
    let total = 0;
    for (const relation of rows) total += await sampledRows(client, relation.name, relation.pages);
    await client.query('commit');
    return total;
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    if ((error as { code?: unknown }).code !== '55P03') throw error;
    return statisticsOnly(client, table);
  }
}

/** Rows of `relation` (quoted) of `pages` pages: counted, or from a sample of about {@link SAMPLE_PAGES} pages scaled to the whole. */
async function sampledRows(client: Client, relation: string, pages: number): Promise<number> {
  if (pages === 0) return 0;
  const percent = Math.min(100, (100 * SAMPLE_PAGES) / pages);
  const sample = percent >= 100 ? '' : ` tablesample system (${percent}) repeatable (0)`;
  const { rows } = await client.query<{ n: number }>(`select count(*)::float8 as n from only ${relation}${sample}`);
  return Math.round(((rows[0]?.n ?? 0) * 100) / percent);
}

/** `reltuples` of the table and its partitions (taking no lock), when it is locked. */
async function statisticsOnly(client: Client, table: string): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `select coalesce(sum(greatest(c.reltuples, 0)), 0)::float8 as n from (${TREE_SQL}) tree join pg_class c on c.oid = tree.oid where c.relkind = 'r'`,
    [quoteTable(table)],
  );
  return Math.round(rows[0]?.n ?? 0);
}
