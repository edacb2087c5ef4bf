/**
 * The test cluster of kysely-scale (`kysely-scale/testing`): real PostgreSQL shards with real
 * streaming replicas, and Redis, for integration tests.
 *
 * @packageDocumentation
 */
import { deadlineIn, testClusterError } from './cluster-wait';
import { resolveTestClusterOptions } from './cluster-options';
import { describeEndpoint, dockerEndpoints, probeDocker } from './docker-probe';
import { startLocalCluster } from './cluster-local-backend';
import { noticeOnce, testcontainersInstalled, TESTCONTAINERS_INSTALL } from './testcontainers-peer';
import type { TestCluster, TestClusterOptions } from './test-cluster-types';

export type { TestCluster, TestClusterOptions, TestRedisOptions, TestServer, TestShard, TestShardUrls } from './test-cluster-types';
export { TEST_CLUSTER_DEFAULTS } from './cluster-options';

/**
 * Starts PostgreSQL shards (each a primary with real streaming replicas) and Redis servers for
 * integration tests, on free loopback ports, and returns their URLs.
 *
 * Where they run: with `backend: 'auto'` (the default), in Docker containers through
 * Testcontainers (images `postgres:15` and `redis:7`) when a Docker engine answers within
 * `dockerProbeTimeoutMillis` and the optional peer dependency `testcontainers` is installed
 * (when it is not, a `KyselyScaleWarning` says so once and local processes run instead);
 * otherwise as local processes of the installed binaries
 * (`initdb`/`postgres`, found on PATH, through `pg_config --bindir` or under
 * `/usr/lib/postgresql/<version>/bin`; `redis-server` on PATH). As root, local PostgreSQL runs
 * as the `postgres` user. Servers use trust authentication on 127.0.0.1 and trade durability
 * for speed (`fsync=off`): they are for tests only.
 *
 * Call `stop()` when done (e.g. in `afterAll`). Servers are also ended when the process exits,
 * and, for local processes, by a small watchdog if the process is killed.
 *
 * @example
 * ```ts
 * import { startTestCluster, type TestCluster } from 'kysely-scale/testing';
 *
 * let cluster: TestCluster;
 * beforeAll(async () => {
 *   cluster = await startTestCluster({ shards: 2, replicasPerShard: 1, redis: true });
 * });
 * afterAll(() => cluster.stop());
 *
 * test('orders', async () => {
 *   const [shard0, shard1] = await cluster.createDatabase('orders_test');
 *   // shard0.primaryUrl === 'postgres://postgres@127.0.0.1:15433/orders_test', …
 * });
 * ```
 *
 * @throws KyselyScaleError with code `E_TEST_CLUSTER` when nothing can run the servers (the
 *   message names what to install), when a server fails to start (with the last lines of its
 *   log), or when the start exceeds `startTimeoutMillis`. Everything started is stopped first.
 * @throws ConfigError (`E_INVALID_CONFIG`) for invalid options, naming the option.
 */
export async function startTestCluster(options: TestClusterOptions = {}): Promise<TestCluster> {
  const resolved = resolveTestClusterOptions(options);
  const deadline = deadlineIn(resolved.startTimeoutMillis);
  if (resolved.backend === 'local') return startLocalCluster(resolved, deadline, '');

  const endpoint = await probeDocker(resolved.dockerProbeTimeoutMillis);
  if (endpoint !== undefined) {
    if (await testcontainersInstalled()) {
      // Loaded only here, so the local path never loads Testcontainers.
      const { startDockerCluster } = await import('./cluster-docker-backend');
      return startDockerCluster(resolved, deadline);
    }
    const missing = `a Docker engine answered at ${describeEndpoint(endpoint)}, but the optional peer dependency testcontainers is not installed (${TESTCONTAINERS_INSTALL})`;
    if (resolved.backend === 'docker') {
      // One "but" per sentence: the missing package is the problem, the engine only its setting.
      throw testClusterError(
        `startTestCluster was asked for backend 'docker' and a Docker engine answered at ${describeEndpoint(endpoint)}; ` +
          `the optional peer dependency testcontainers is not installed: ${TESTCONTAINERS_INSTALL}.`,
        { backend: 'docker', install: 'testcontainers' },
      );
    }
    noticeOnce(`kysely-scale/testing: ${missing}; running local processes instead (backend: 'local' skips the Docker probe).`);
    return startLocalCluster(resolved, deadline, `(Also, ${missing}.)`);
  }
  const tried = dockerEndpoints().map(describeEndpoint).join(', ');
  const noEngine = `no Docker engine answered within ${resolved.dockerProbeTimeoutMillis} ms (tried ${tried})`;
  if (resolved.backend === 'docker') {
    throw testClusterError(
      `startTestCluster was asked for backend 'docker', but ${noEngine}. Start Docker, set DOCKER_HOST, ` +
        "raise `dockerProbeTimeoutMillis`, or use backend 'local' or 'auto'.",
      { backend: 'docker' },
    );
  }
  return startLocalCluster(resolved, deadline, `(Also, ${noEngine}.)`);
}
