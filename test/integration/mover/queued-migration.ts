/**
 * The lock an operator's command meets most: a migration (`alter table … add column note text
 * default 'hush-hush'`, application "schema migration") queued for `ACCESS EXCLUSIVE` behind a long
 * transaction that read the table (application "report job", a literal `'tok-Sekret-42'` in its
 * statement), so every later lock request on the table queues behind both.
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { untilWaitingForLock } from '../../support/lock-waits';

export interface QueuedMigration {
  readonly reader: Client;
  readonly migration: Client;
  /** Ends the long transaction, lets the migration run, and drops its column again. */
  finish(): Promise<void>;
  /** Closes both sessions. */
  close(): Promise<void>;
}

/** Queues the migration of `table` (`orders`: the statements read `amount`) on the server of `url`; `admin` watches it queue. */
export async function queueMigration(url: string, table: string, admin: Pick<Client, 'query'>): Promise<QueuedMigration> {
  const reader = directClient({ connectionString: url, application_name: 'report job' });
  const migration = directClient({ connectionString: url, application_name: 'schema migration' });
  await reader.connect();
  await migration.connect();
  await reader.query('begin');
  await reader.query(`select count(*) from ${table} where amount > 0 and 'tok-Sekret-42' <> ''`);
  const altered = migration.query(`alter table ${table} add column note text default 'hush-hush'`);
  altered.catch(() => undefined);
  await untilWaitingForLock(admin, `alter table ${table}`);
  return {
    reader,
    migration,
    async finish() {
      await reader.query('rollback');
      await altered;
      await migration.query(`alter table ${table} drop column note`);
    },
    async close() {
      await reader.end();
      await migration.end();
    },
  };
}
