/** A shard URL may carry its own session options (`?options=-c …`); the mover's settings must survive them. */
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession } from '../../../src/admin/mover/shard-session';

let cluster: TestCluster;
let url: string;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('shard_session_options');
  url = shard!.primaryUrl;
}, 60_000);

afterAll(() => cluster?.stop());

async function settingsOf(sessionUrl: string): Promise<Record<string, string>> {
  const session = await openShardSession(sessionUrl);
  try {
    const { rows } = await session.client.query<{ bypass: string; workers: string; timeout: string }>(
      `select current_setting('kysely_scale.bypass', true) as bypass, current_setting('max_parallel_workers_per_gather') as workers, current_setting('statement_timeout') as timeout`,
    );
    return { ...rows[0]! };
  } finally {
    await session.close();
  }
}

test('a plain URL: the session bypasses fences and runs no parallel workers', async () => {
  expect(await settingsOf(url)).toMatchObject({ bypass: 'on', workers: '0' });
});

test("a URL with its own options keeps them and the mover's (pg would let the URL's replace the mover's)", async () => {
  const withOptions = new URL(url);
  withOptions.searchParams.set('options', '-c statement_timeout=12345 -c max_parallel_workers_per_gather=4');
  expect(await settingsOf(withOptions.toString())).toEqual({ bypass: 'on', workers: '0', timeout: '12345ms' });
});
