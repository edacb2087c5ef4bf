/**
 * The shard sessions of a move's planning: every check and count made before anything changes
 * (the whole of a dry run). Each runs under the operation's deadlines (`statementTimeoutMillis`,
 * `copyIdleTimeoutMillis`: `shard-deadlines.ts`) and clock, names its shard as the topology does,
 * and must log in within {@link PLAN_CONNECT_TIMEOUT_MILLIS}. Nothing has changed while a move
 * plans, so a shard that cannot be reached, stops answering ({@link ShardSilentError}) or keeps a
 * planning statement waiting for a lock past the mover's bound ({@link ShardLockError}) refuses the
 * operation (`E_MOVE_REFUSED`, reason `unreachable`, or `table-locked` naming who keeps the lock)
 * instead of failing it; the session was dropped, and the operator lock goes as the operation
 * returns its result.
 */
import type { Client } from 'pg';
import type { Clock } from '../../kernel/clock';
import type { Shard } from '../../cluster/topology';
import { MoveRefusedError, ShardLockError, ShardSilentError } from './mover-errors';
import { openShardSession, type ShardSessionOptions } from './shard-session';
import type { ShardDeadlines } from './shard-deadlines';

/** How long a planning session may take to log in before its shard counts as unreachable. */
export const PLAN_CONNECT_TIMEOUT_MILLIS = 5000;

/** Sessions for one operation's planning. */
export interface PlanSessions {
  /** Runs `fn` with a session on `shard`'s primary, closed afterwards; refused when the shard cannot be reached, stops answering or keeps a statement waiting for a lock. */
  run<T>(shard: Shard, fn: (client: Client) => Promise<T>): Promise<T>;
  /** The owner of a session on `shardId`: its name, the operation's deadlines and clock. */
  owner(shardId: string): ShardSessionOptions;
}

/** Planning sessions of `operation` (`drain`, …), under `deadlines` and on `clock`. */
export function planSessions(operation: string, deadlines: ShardDeadlines, clock: Clock): PlanSessions {
  const owner = (shardId: string): ShardSessionOptions => ({
    shard: shardId,
    deadlines: { statementTimeoutMillis: deadlines.statementTimeoutMillis, copyIdleTimeoutMillis: deadlines.copyIdleTimeoutMillis },
    clock,
  });
  return {
    owner,
    async run(shard, fn) {
      let session;
      try {
        session = await openShardSession(shard.primary.url, PLAN_CONNECT_TIMEOUT_MILLIS, owner(shard.id));
      } catch (error) {
        // pg's own connect timeout says "timeout expired": a login that got no answer.
        const why = (error as Error).message === 'timeout expired' ? `no answer to the login in ${PLAN_CONNECT_TIMEOUT_MILLIS} ms (frozen, overloaded or unreachable)` : (error as Error).message;
        throw new MoveRefusedError('unreachable', `Shard "${shard.id}" (${shard.primary.redactedUrl}) cannot be reached: ${why}. Nothing was changed.`, { shardId: shard.id });
      }
      try {
        return await fn(session.client);
      } catch (error) {
        throw asRefusal(operation, error);
      } finally {
        await session.close();
      }
    },
  };
}

/** A shard that stopped answering, or a lock that held a statement, while `operation` planned: a refusal (nothing was changed); anything else as it is. */
export function asRefusal(operation: string, error: unknown): unknown {
  if (error instanceof ShardSilentError) {
    return new MoveRefusedError(
      'unreachable',
      `The ${operation}'s plan stopped: shard "${error.shard}" did not answer ${error.waitedFor} within ${error.millis} ms (${error.option}, ${error.flag}), and ${error.finding}. ` +
        `Nothing was changed; run the ${operation} again once the shard answers (if it is only slow, give it longer with ${error.flag}).`,
      { ...error.context, shardId: error.shard },
    );
  }
  if (error instanceof ShardLockError) {
    const held = error.message.replace(/^Shard "[^"]*": /, '').replace(/: it dropped its session and stopped\. .*$/s, '');
    return new MoveRefusedError('table-locked', `The ${operation}'s plan stopped on shard "${error.shard}": ${held}. Nothing was changed; end those transactions (or let them finish), then run the ${operation} again.`, {
      ...error.context,
      shardId: error.shard,
    });
  }
  return error;
}
