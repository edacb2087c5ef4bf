/** One statement of an app session (row security applies to its role) whose router is at a given topology version. */
import { directClient } from '../../support/direct-pool';

/** Runs `sql` on `appUrl` (an app role's URL) as a router at `version` does: its row count (`1 row(s)`), or its SQLSTATE (`error KS001`). */
export async function appStatement(appUrl: string, version: number, sql: string, values: unknown[]): Promise<string> {
  const client = directClient({ connectionString: appUrl, options: `-c kysely_scale.topology_version=${version}` });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await client.query(sql, values).then(
      (r) => `${r.rowCount} row(s)`,
      (e: { code?: string }) => `error ${e.code}`,
    );
  } finally {
    await client.end();
  }
}
