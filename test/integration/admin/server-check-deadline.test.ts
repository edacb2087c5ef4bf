/**
 * Operator commands' connections to shard servers wait at most their client-side deadlines: a
 * server frozen with SIGSTOP enforces no statement_timeout and never closes its socket, so only
 * the client can stop waiting. One shard, a primary with a real streaming replica.
 */
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { withServerClient } from '../../../src/admin/server-client';
import { checkShardServers } from '../../../src/admin/server-checks';
import { ServerCheckError } from '../../../src/admin/admin-errors';
import { ErrorCodes } from '../../../src/kernel/errors';
import { freeze } from '../replication/replication-fault-fixture';
import { SECRET, withPassword } from './admin-cli-process';

const DEADLINES = { connectionTimeoutMillis: 1000, statementTimeoutMillis: 1000 };
let cluster: TestCluster;
let shard: TestShardUrls;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, replicasPerShard: 1, backend: 'local' });
  [shard] = (await cluster.createDatabase('server_check_deadline')) as [TestShardUrls];
}, 60_000);

afterAll(() => cluster?.stop());

/** `promise`'s outcome, or a failure once `millis` passed (the old code waited for a frozen server forever). */
function within<T>(millis: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${millis} ms`)), millis);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

test('a server frozen between two statements fails the second at its client-side deadline, with an error naming the server (password hidden)', async () => {
  const replica = cluster.shards[0]!.replicas[0]!;
  let thaw: (() => void) | undefined;
  let frozenAt = 0;
  try {
    const outcome = await within(
      8000,
      'a statement on a frozen server',
      withServerClient(
        withPassword(shard.replicaUrls[0]!),
        `${shard.id} replica`,
        async (client) => {
          await client.query('select 1');
          thaw = freeze(replica);
          frozenAt = performance.now();
          return client.query('select 2');
        },
        DEADLINES,
      ).then(
        () => undefined,
        (error: unknown) => error as Error,
      ),
    );
    const millis = performance.now() - frozenAt;
    console.log(JSON.stringify({ frozenServerStatementFailedAfterMillis: Math.round(millis) }));
    expect(outcome?.message).toMatch(new RegExp(`^${shard.id} replica postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/\\w+: a statement did not answer within 1500 ms$`));
    expect(outcome?.message).not.toContain(SECRET);
    // The deadline is statementTimeoutMillis plus 500 ms of grace.
    expect(millis).toBeGreaterThanOrEqual(1490);
    expect(millis).toBeLessThan(3000);
  } finally {
    thaw?.();
  }
}, 30_000);

test('init checks report a frozen replica as a coded problem naming it (password hidden), within the deadline', async () => {
  const thaw = freeze(cluster.shards[0]!.replicas[0]!);
  try {
    const started = performance.now();
    const outcome = await within(
      8000,
      'server checks with a frozen replica',
      checkShardServers([{ id: shard.id, primary: withPassword(shard.primaryUrl), replicas: [withPassword(shard.replicaUrls[0]!)] }], DEADLINES).then(
        () => undefined,
        (error: unknown) => error,
      ),
    );
    const millis = performance.now() - started;
    console.log(JSON.stringify({ checksWithFrozenReplicaMillis: Math.round(millis) }));
    expect(outcome).toBeInstanceOf(ServerCheckError);
    const error = outcome as ServerCheckError;
    expect(error.code).toBe(ErrorCodes.INVALID_TOPOLOGY);
    expect(error.problems).toEqual([
      {
        shard: shard.id,
        role: 'replica',
        server: expect.stringMatching(/^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/\w+$/),
        check: 'unreachable',
        problem: 'does not answer: the login did not answer within 1000 ms',
      },
    ]);
    expect(error.message).not.toContain(SECRET);
    expect(millis).toBeLessThan(3000);
  } finally {
    thaw();
  }
}, 30_000);
