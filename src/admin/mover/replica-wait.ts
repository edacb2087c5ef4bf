/**
 * Before a new version is published, the replicas of the batch's two shards must have replayed
 * the switch (the guard rows and the copied rows), so a replica read routed by the new version
 * finds the rows and a stale router is refused there too. A replica that refuses connections is
 * skipped: it replays the switch before it can serve anything newer. The whole wait, connecting,
 * each query and closing included, lasts at most `replicaWaitMillis`: a replica that does not
 * answer in that time (frozen, overloaded) counts as not caught up, like one too slow to replay,
 * and the cutover fails naming it.
 */
import type { Client } from 'pg';
import type { ServerSpec, Shard } from '../../cluster/topology';
import { DeadlineError, withDeadline } from '../../kernel/deadline';
import type { BatchScope } from './batch-scope';
import type { MoveContext } from './move-context';
import { openShardSession, type ShardSession } from './shard-session';
import { MoveFailedError } from './mover-errors';

const CONNECT_BACKSTOP_MILLIS = 500;

/** How one replica's wait ended: `silent` when it did not answer in time, `behind` when it answered but had not replayed in time. */
type ReplicaWait = 'replayed' | 'refused' | 'behind' | 'silent';

/** Waits until every reachable replica of the batch's shards replayed past their primary's current WAL position. */
export async function waitForReplicas(scope: BatchScope, timeoutMillis: number): Promise<void> {
  const { batch, topology } = scope;
  await waitForShardReplicas(scope.ctx, [
    { shard: topology.shardById(batch.source), primary: scope.source },
    { shard: topology.shardById(batch.target), primary: scope.target },
  ], timeoutMillis, { batch: batch.index });
}

/** Waits until every reachable replica of each shard replayed past its primary's current WAL position (`context` goes into the error). */
export async function waitForShardReplicas(
  ctx: MoveContext,
  pairs: readonly { readonly shard: Shard | undefined; readonly primary: Client }[],
  timeoutMillis: number,
  context: Record<string, unknown>,
): Promise<void> {
  const deadline = ctx.clock.monotonicNow() + timeoutMillis;
  for (const { shard, primary } of pairs) {
    if (shard === undefined || shard.replicas.length === 0) continue;
    const { rows } = await primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
    const lsn = rows[0]!.lsn;
    for (const replica of shard.replicas) {
      const outcome = await waitForReplica(ctx, replica, lsn, deadline);
      if (outcome === 'replayed' || outcome === 'refused') continue;
      const what =
        outcome === 'silent'
          ? `did not answer within ${timeoutMillis} ms (replicaWaitMillis; frozen or overloaded?), so it counts as not caught up: make it answer or take it out of the topology, then resume.`
          : `did not replay the cutover within ${timeoutMillis} ms (replicaWaitMillis).`;
      throw new MoveFailedError(`Replica ${replica.redactedUrl} of "${shard.id}" ${what}`, {
        moveId: ctx.move.id,
        ...context,
        shardId: shard.id,
        replica: replica.redactedUrl,
      });
    }
  }
}

/** Polls `replica` until it replayed `lsn` or `deadline` (monotonic ms) passed; every wait on it ends by the deadline. */
async function waitForReplica(ctx: MoveContext, replica: ServerSpec, lsn: string, deadline: number): Promise<ReplicaWait> {
  const within = <T>(promise: Promise<T>, onLate: () => void): Promise<T> =>
    withDeadline(promise, Math.max(1, deadline - ctx.clock.monotonicNow()), `replica ${replica.redactedUrl}`, { clock: ctx.clock, onLate });
  // pg's own connect timeout is a backstop after ours: a login that never answers must read as silent, not refused.
  const opening = openShardSession(replica.url, Math.max(1, Math.ceil(deadline - ctx.clock.monotonicNow())) + CONNECT_BACKSTOP_MILLIS);
  let session: ShardSession;
  try {
    session = await within(opening, () => void opening.then((late) => late.destroy(), () => undefined));
  } catch (error) {
    return error instanceof DeadlineError ? 'silent' : 'refused';
  }
  const abandon = (): void => session.destroy();
  try {
    for (;;) {
      const { rows } = await within(session.client.query<{ done: boolean }>('select coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, true) as done', [lsn]), abandon);
      if (rows[0]?.done === true) return 'replayed';
      if (ctx.clock.monotonicNow() >= deadline) return 'behind';
      await ctx.pause(2);
    }
  } catch (error) {
    if (error instanceof DeadlineError) return 'silent';
    throw error;
  } finally {
    await within(session.close(), abandon).catch(() => undefined);
  }
}
