/**
 * PostgreSQL WAL positions (`pg_lsn`, written `16/B374D848`) as bigints, so they compare and
 * subtract exactly (a position is 64 bits; a JavaScript number holds 53).
 */
export function parseLsn(text: string): bigint {
  const slash = text.indexOf('/');
  if (slash <= 0 || slash === text.length - 1 || !/^[0-9A-Fa-f]+\/[0-9A-Fa-f]+$/.test(text)) {
    throw new TypeError(`Not a WAL position (pg_lsn): ${JSON.stringify(text)}`);
  }
  return (BigInt(`0x${text.slice(0, slash)}`) << 32n) | BigInt(`0x${text.slice(slash + 1)}`);
}

/** The `pg_lsn` text of a position. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/**
 * SQL (a scalar subquery yielding `pg_lsn` text) for where a primary's WAL ends: the end of the
 * last record it inserted, which is what a standby that replayed everything reports.
 *
 * `pg_current_wal_insert_lsn()` points where the next record will start. When the last record
 * filled its page, or a segment switch closed its segment (`archive_timeout` does this to an idle
 * primary), that is past the next page's header, and a caught-up standby would look behind until
 * the next write: reads waiting for it (read-your-writes) would wait in vain. No record ends inside
 * a page header, so a position right after one is the page boundary. Headers are 24 bytes and 40 on
 * a segment's first page (PostgreSQL's SizeOfXLogShortPHD and SizeOfXLogLongPHD on 64-bit builds).
 * The insert position, not the flush position, so a commit made with `synchronous_commit = off`
 * is counted as soon as it is visible.
 */
export const PRIMARY_WAL_END_SQL = `(select format('%s/%s', to_hex(floor(e / 4294967296)::bigint), to_hex((e % 4294967296)::bigint))
  from (select i - case when i % pg_size_bytes(current_setting('wal_segment_size')) = 40 then 40
                        when i % current_setting('wal_block_size')::numeric = 24 then 24 else 0 end as e
        from (select pg_current_wal_insert_lsn() - '0/0'::pg_lsn as i) w) p)`;
