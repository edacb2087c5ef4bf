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
 * SQL (a scalar subquery yielding `pg_lsn` text) for where a primary's WAL ends, as far as a
 * standby can follow it: what it flushed, which is all that is streamed and what a standby that
 * replayed everything reports. A commit is flushed before COMMIT returns unless the session runs
 * with `synchronous_commit = off`; there, where the last inserted record ends, so such a commit
 * counts as soon as it is visible. (A `SET LOCAL synchronous_commit = off` inside a transaction is
 * over when the position is read after its COMMIT: such a commit reaches standbys within
 * `wal_writer_delay`, and a read-your-writes read may miss it until then.)
 *
 * Not the insert position in general: it also counts records nobody waits for (hint-bit page
 * images a SELECT writes under data checksums, running-transaction snapshots), which stay unflushed
 * until the WAL writer wakes, seconds later on an idle server, so a read waiting for a standby to
 * reach it waited in vain. And the insert position points where the next record will start: past
 * the next page's header when the last record filled its page or a segment switch closed its
 * segment (`archive_timeout` on an idle primary). No record ends inside a page header, so a
 * position right after one is the page boundary; headers are 24 bytes and 40 on a segment's first
 * page (SizeOfXLogShortPHD and SizeOfXLogLongPHD on 64-bit builds).
 */
export const PRIMARY_WAL_END_SQL = `(select case when current_setting('synchronous_commit') <> 'off' then pg_current_wal_flush_lsn()::text else
  (select format('%s/%s', to_hex(floor(e / 4294967296)::bigint), to_hex((e % 4294967296)::bigint))
   from (select i - case when i % pg_size_bytes(current_setting('wal_segment_size')) = 40 then 40
                         when i % current_setting('wal_block_size')::numeric = 24 then 24 else 0 end as e
         from (select pg_current_wal_insert_lsn() - '0/0'::pg_lsn as i) w) p) end)`;
