/**
 * The operator's side of replica identity: `init` (and every move's start) writes each shard's
 * identity row on its primary, as the operator role, which may create it. App roles usually may
 * not (CREATE on the database), so a dialect connecting as one leaves every replica `unverified`
 * and reads only primaries, a state nothing but `replicaStatus()` shows.
 */
import { writeReplicaIdentity } from '../replication/replica-identity';
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
          await withServerClient(shard.primary, `shard "${shard.id}" primary`, (client) => writeReplicaIdentity(client, shard.id), options);
          return undefined;
        } catch (error) {
          return { shard: shard.id, problem: redactText(error instanceof Error ? error.message : String(error)) };
        }
      }),
  );
  return outcomes.filter((o): o is IdentityProblem => o !== undefined);
}
