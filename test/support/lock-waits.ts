import type { Client } from 'pg';
import { eventually } from './postgres-replication';

/** Resolves once a session of `client`'s server waits for a lock while running a statement that starts with `statementStart`. */
export function untilWaitingForLock(client: Pick<Client, 'query'>, statementStart: string, what = `"${statementStart}…" waits for its lock`): Promise<void> {
  return eventually(what, async () => (await client.query(`select 1 from pg_stat_activity where wait_event_type = 'Lock' and starts_with(query, $1)`, [statementStart])).rowCount === 1);
}
