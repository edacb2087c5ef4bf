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
