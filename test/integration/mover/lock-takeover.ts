/** Ending an operator's lock session, for the takeover tests. */
import type { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';

/** Ends the operator lock's catalog session (as a catalog restart or failover would; the mover notices: its connection errs) and waits until the lock is free. */
export async function endLockSession(catalogPool: ReturnType<typeof directPool>): Promise<void> {
  const { rows } = await catalogPool.query<{ pid: number }>(
    `select a.pid from pg_locks l join pg_stat_activity a using (pid) where l.locktype = 'advisory' and l.granted and a.datname = current_database()`,
  );
  expect(rows).toHaveLength(1);
  await catalogPool.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
  await until('the lock free', async () => (await catalogPool.query<{ n: number }>(`select count(*)::int as n from pg_locks where locktype = 'advisory' and granted`)).rows[0]!.n === 0, 10_000);
}
