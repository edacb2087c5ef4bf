/**
 * The operator's side of replica identity: `init` (and every move's start) writes each shard's
 * identity row on its primary, as the operator role, which may create it. App roles usually may
 * not (CREATE on the database), so a dialect connecting as one leaves every replica `unverified`
 * and reads only primaries, a state nothing but `replicaStatus()` shows.
 */
import { IDENTITY_SQL_EXPRESSION, parseIdentity, writeReplicaIdentity } from '../replication/replica-identity';
import { redactText } from '../kernel/redact';
import { withServerClient } from './server-client';
import type { ServerClientOptions } from './server-client-options';

/** A primary whose identity could not be written, and why. */
export interface IdentityProblem {
  readonly shard: string;
  readonly problem: string;
}

/**
 * Writes the identity of each shard that has replicas on its primary (kept when one is there);
 * best effort: a primary that refuses or does not answer is reported, not thrown, since the
 * topology is right without it and the dialect writes it itself when its role may.
 */
export async function writeShardIdentities(shards: readonly { readonly id: string; readonly primary: string; readonly replicas: readonly unknown[] }[], options: ServerClientOptions = {}): Promise<IdentityProblem[]> {
  const outcomes = await Promise.all(
    shards
      .filter((shard) => shard.replicas.length > 0)
      .map(async (shard): Promise<IdentityProblem | undefined> => {
        try {
          const written = await withServerClient(
            shard.primary,
            `shard "${shard.id}" primary`,
            async (client) => {
              await writeReplicaIdentity(client, shard.id);
              return parseIdentity((await client.query<{ value: unknown }>(`select ${IDENTITY_SQL_EXPRESSION} as value`)).rows[0]?.value);
            },
            options,
          );
          // An existing row is kept: one naming another shard (a copy of it) proves no replica here.
          if (written !== undefined && written.shardId !== shard.id) {
            return { shard: shard.id, problem: `its identity row names shard "${written.shardId}" (a copy of that shard: a restored backup, a split by promotion), so none of its replicas can be proven; if this database really is "${shard.id}", delete its kysely_scale.replica_identity row: the next move or dialect check writes a new one` };
          }
          return undefined;
        } catch (error) {
          return { shard: shard.id, problem: redactText(error instanceof Error ? error.message : String(error)) };
        }
      }),
  );
  return outcomes.filter((o): o is IdentityProblem => o !== undefined);
}
