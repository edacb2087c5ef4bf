/**
 * Replica identity: proof that a standby streams from this shard's primary. Every server of the
 * test cluster (and many real fleets built from one image) shares one system identifier, and WAL
 * positions of different primaries are comparable numbers, so neither tells shards apart. Instead
 * each shard's primary holds one row, `kysely_scale.replica_identity` (its shard id and a random
 * token), written once by the primary's first check or by {@link writeReplicaIdentity}; its
 * standbys replay the row. A replica whose token differs from its listed primary's streams from
 * another primary (another shard's standby listed by mistake) and is refused; one without the row
 * has not been proven yet. Every check reads the token again, so a server that came back after a
 * reconnect or a restart proves itself again before it serves a read.
 */
import { randomUUID } from 'node:crypto';

/** What a server replays (or holds, on a primary) as its shard's identity. */
export interface ReplicaIdentity {
  /** Random per primary: the same on the primary and every standby that replays it. */
  readonly token: string;
  /** The shard id the primary was written under (for readable refusals only). */
  readonly shardId: string;
}

/**
 * A SQL expression giving `'<token> <shard id>'`, or null when the identity table does not exist
 * (yet). `query_to_xml` runs the inner query only when the table exists, so one statement works on
 * servers with and without it.
 */
export const IDENTITY_SQL_EXPRESSION = `case when to_regclass('kysely_scale.replica_identity') is null then null
  else (xpath('/row/i/text()', query_to_xml('select token || '' '' || shard_id as i from kysely_scale.replica_identity', false, true, '')))[1]::text end`;

/** Parses the value of {@link IDENTITY_SQL_EXPRESSION}. */
export function parseIdentity(value: unknown): ReplicaIdentity | undefined {
  if (typeof value !== 'string') return undefined;
  const space = value.indexOf(' ');
  if (space <= 0) return undefined;
  return Object.freeze({ token: value.slice(0, space), shardId: value.slice(space + 1) });
}

const SHARD_ID = /^[A-Za-z0-9_-]{1,63}$/;

/**
 * The statements that write a primary's identity once (an existing row is kept: its standbys
 * already replay it). Idempotent; needs CREATE on the database the first time.
 */
export function replicaIdentitySql(shardId: string): string {
  if (!SHARD_ID.test(shardId)) throw new TypeError(`Not a shard id: ${JSON.stringify(shardId)}`);
  return `create schema if not exists kysely_scale;
create table if not exists kysely_scale.replica_identity (
  only_row boolean primary key default true check (only_row),
  shard_id text not null,
  token text not null,
  written_at timestamptz not null default now()
);
grant usage on schema kysely_scale to public;
grant select on kysely_scale.replica_identity to public;
insert into kysely_scale.replica_identity (shard_id, token) values ('${shardId}', '${randomUUID()}') on conflict (only_row) do nothing;`;
}

/** Anything that runs a simple (multi-statement, parameterless) query: a pg `Client` or pooled client. */
export interface SimpleQueryable {
  query(text: string): Promise<unknown>;
}

/** Writes the identity of `shardId` on its primary (`client` connected to the shard's database) unless it has one. */
export async function writeReplicaIdentity(client: SimpleQueryable, shardId: string): Promise<void> {
  await client.query(replicaIdentitySql(shardId));
}
