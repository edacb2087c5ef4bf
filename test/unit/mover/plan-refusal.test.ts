/** What a shard that went silent, or a lock that held a statement, while a command planned becomes: a refusal naming the shard (nothing was changed). */
import { asRefusal } from '../../../src/admin/mover/plan-sessions';
import { MoveRefusedError, ShardLockError, ShardSilentError } from '../../../src/admin/mover/mover-errors';
import { ErrorCodes } from '../../../src/kernel/errors';

test('a silent shard refuses the command: unreachable, naming the shard, the deadline and the finding', () => {
  const silent = new ShardSilentError('shard1', 'a statement ("select ?")', 1000, 'statementTimeoutMillis', 'a new connection to it failed too (no answer to the login in 1000 ms): the shard is frozen, overloaded or unreachable', { pid: 42 });
  const refusal = asRefusal('drain', silent) as MoveRefusedError;
  expect(refusal).toBeInstanceOf(MoveRefusedError);
  expect(refusal.code).toBe(ErrorCodes.MOVE_REFUSED);
  expect(refusal.context).toMatchObject({ reason: 'unreachable', shardId: 'shard1', shard: 'shard1', option: 'statementTimeoutMillis', flag: '--statement-timeout-ms', millis: 1000, pid: 42 });
  expect(refusal.message).toBe(
    `The drain's plan stopped: shard "shard1" did not answer a statement ("select ?") within 1000 ms (statementTimeoutMillis, --statement-timeout-ms), and a new connection to it failed too (no answer to the login in 1000 ms): the shard is frozen, overloaded or unreachable. ` +
      'Nothing was changed; run the drain again once the shard answers (if it is only slow, give it longer with --statement-timeout-ms).',
  );
});

test('a lock past the bound refuses the command: table-locked, with the blockers', () => {
  const blockers = [{ pid: 7, applicationName: 'schema migration', state: 'active', waiting: true }];
  const locked = new ShardLockError('shard1', 'a statement ("select ? from orders")', 'orders', 5200, 5000, 'backend 7 "schema migration" active, waiting for its lock on orders', { pid: 42, pids: [7], blockers });
  const refusal = asRefusal('move', locked) as MoveRefusedError;
  expect(refusal.context).toMatchObject({ reason: 'table-locked', shardId: 'shard1', table: 'orders', sqlState: '55P03', pids: [7], blockers });
  expect(refusal.message).toBe(
    `The move's plan stopped on shard "shard1": a statement ("select ? from orders") waited 5.2 s for a lock on orders, kept by backend 7 "schema migration" active, waiting for its lock on orders. ` +
      'The mover waits at most 5000 ms for a lock. Nothing was changed; end those transactions (or let them finish), then run the move again.',
  );
});

test('anything else passes as it is', () => {
  const other = new Error('boom');
  expect(asRefusal('drain', other)).toBe(other);
});
