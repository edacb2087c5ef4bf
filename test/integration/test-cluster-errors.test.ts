import { startTestCluster, type TestCluster } from '../../src/testing';
import { ErrorCodes } from '../../src/kernel/errors';

// Errors of the test cluster name the server they are about; PostgreSQL's own errors pass unchanged.
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
}, 60_000);

afterAll(() => cluster?.stop());

test('createDatabase on a stopped primary fails with E_TEST_CLUSTER naming the shard and server; a taken name fails with PostgreSQL\'s 42P04', async () => {
  const primary = cluster.shards[0]!.primary;
  await primary.stop();
  const error = (await cluster.createDatabase('while_down').catch((e: unknown) => e)) as Error & { code: string; cause?: { code?: string }; context: Record<string, unknown> };
  expect(error.code).toBe(ErrorCodes.TEST_CLUSTER);
  expect(error.message).toContain(`the primary of shard0 (${primary.url}) does not answer: connect ECONNREFUSED`);
  expect(error.message).toContain('it was stopped: start() it first');
  expect(error.context).toEqual({ shard: 'shard0', server: primary.url });
  expect(error.cause?.code).toBe('ECONNREFUSED');

  await primary.start();
  await cluster.createDatabase('taken');
  await expect(cluster.createDatabase('taken')).rejects.toMatchObject({ code: '42P04' });
}, 60_000);
