/**
 * Every server of the test cluster comes from one `initdb` template, so all share one system
 * identifier, and WAL positions of different primaries are comparable numbers: nothing tells the
 * shards apart. Each new database therefore gets its shard's replica identity on its primary (the
 * row the replica checks compare, see `src/replication/replica-identity.ts`), before the cluster
 * waits for the replicas to replay the database, so a test's replicas are proven from their first check.
 */
import { writeReplicaIdentity } from '../replication/replica-identity';
import { withPgClient, type PgAddress } from './pg-probe';

/** Writes the identity of `shardId` into `database` on its primary. */
export function giveShardIdentity(primary: PgAddress, database: string, shardId: string): Promise<void> {
  return withPgClient({ ...primary, database }, (client) => writeReplicaIdentity(client, shardId));
}
