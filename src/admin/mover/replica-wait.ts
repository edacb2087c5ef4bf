/**
 * Before a new version is published, the replicas of the batch's two shards must have replayed
 * the switch (the guard rows and the copied rows), so a replica read routed by the new version
 * finds the rows and a stale router is refused there too. A replica that cannot be reached is
 * skipped: it replays the switch before it can serve anything newer.
 */
import type { BatchScope } from './batch-scope';
import { openShardSession } from './shard-session';
import { MoveFailedError } from './mover-errors';

/** Waits until every reachable replica of the batch's shards replayed past their primary's current WAL position. */
export async function waitForReplicas(scope: BatchScope, timeoutMillis: number): Promise<void> {
  const { ctx, batch, topology } = scope;
  const pairs = [
    { shard: topology.shardById(batch.source), primary: scope.source },
    { shard: topology.shardById(batch.target), primary: scope.target },
  ];
  const deadline = ctx.clock.monotonicNow() + timeoutMillis;
  for (const { shard, primary } of pairs) {
    if (shard === undefined || shard.replicas.length === 0) continue;
    const { rows } = await primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
    const lsn = rows[0]!.lsn;
    for (const replica of shard.replicas) {
      const session = await openShardSession(replica.url, 2_000).catch(() => undefined);
      if (session === undefined) continue;
      try {
        for (;;) {
          const { rows: r } = await session.client.query<{ done: boolean }>('select coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, true) as done', [lsn]);
          if (r[0]?.done === true) break;
          if (ctx.clock.monotonicNow() >= deadline) {
            throw new MoveFailedError(`Replica ${replica.redactedUrl} of "${shard.id}" did not replay the cutover within ${timeoutMillis} ms.`, { moveId: ctx.move.id, batch: batch.index });
          }
          await ctx.pause(2);
        }
      } finally {
        await session.close();
      }
    }
  }
}
