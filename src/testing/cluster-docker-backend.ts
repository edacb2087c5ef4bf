/**
 * The Docker backend of the test cluster, through Testcontainers. This module is loaded only
 * when a Docker engine answered the probe, so the local backend never loads Testcontainers.
 */
import type { StartedNetwork, StartedTestContainer } from 'testcontainers';
import { createDatabaseOnShards, replayTimeoutMillis } from './cluster-databases';
import type { ResolvedTestClusterOptions } from './cluster-options';
import { deadlineIn, testClusterError, type Deadline } from './cluster-wait';
import { waitForPostgres, waitForStreaming } from './pg-probe';
import { allocatePorts, releasePorts } from './port-allocator';
import { formRedisCluster } from './redis-cluster-setup';
import { waitForRedis } from './redis-probe';
import type { TestCluster, TestServer, TestShard } from './test-cluster-types';

const PG_IMAGE = 'postgres:15';
const REDIS_IMAGE = 'redis:7';
const HBA_PATH = '/etc/kysely-scale-pg_hba.conf';
// Containers are reached through published ports, so trust must cover any address; the ports
// are published on this machine for the duration of a test run only.
const PG_HBA = `local all all trust
host all all all trust
host replication all all trust
`;
// Same trade-offs as the local backend: speed over durability, replicas that retry quickly.
const PG_SETTINGS = [
  'listen_addresses=*',
  `hba_file=${HBA_PATH}`,
  'fsync=off',
  'full_page_writes=off',
  'max_connections=200',
  'wal_level=replica',
  'max_wal_senders=10',
  'wal_keep_size=256MB',
  'hot_standby=on',
  'hot_standby_feedback=on',
  'wal_retrieve_retry_interval=200ms',
].flatMap((setting) => ['-c', setting]);

// Bootstraps a replica with pg_basebackup from its primary on first start only (a restarted
// container keeps its data), then runs postgres in the foreground as PID 1.
const REPLICA_SCRIPT = `set -e
data=/var/lib/postgresql/replica
if [ ! -s "$data/PG_VERSION" ]; then
  rm -rf "$data"
  until pg_basebackup -h "$1" -p 5432 -U postgres -D "$data" -R -X stream --checkpoint=fast; do
    rm -rf "$data"; sleep 0.5
  done
  echo "primary_conninfo = 'host=$1 port=5432 user=postgres application_name=$2'" >> "$data/postgresql.auto.conf"
fi
shift 2
exec postgres -D "$data" "$@"
`;

/** A container-backed server whose stop/start keep the container (and its data and port). */
class DockerServer implements TestServer {
  #running = true;

  constructor(
    readonly name: string,
    readonly url: string,
    readonly port: number,
    readonly container: StartedTestContainer,
    private readonly waitReady: (deadline: Deadline) => Promise<void>,
    private readonly startTimeoutMillis: number,
  ) {}

  get running(): boolean {
    return this.#running;
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    const { getContainerRuntimeClient } = await import('testcontainers');
    const client = await getContainerRuntimeClient();
    // Docker sends the image's stop signal (SIGINT for postgres: fast shutdown; SIGTERM for redis).
    await client.container.stop(client.container.getById(this.container.getId()), { timeout: 10_000 });
    this.#running = false;
  }

  async start(): Promise<void> {
    if (this.#running) return;
    const { getContainerRuntimeClient } = await import('testcontainers');
    const client = await getContainerRuntimeClient();
    // The host port is a fixed binding, so it survives the restart.
    await client.container.start(client.container.getById(this.container.getId()));
    this.#running = true;
    await this.waitReady(deadlineIn(this.startTimeoutMillis));
  }
}

/** Starts the cluster as containers: primaries first, then replicas that pg_basebackup from them. */
export async function startDockerCluster(options: ResolvedTestClusterOptions, deadline: Deadline): Promise<TestCluster> {
  const tc = await import('testcontainers');
  const containers: StartedTestContainer[] = [];
  const ports: number[] = [];
  let network: StartedNetwork | undefined;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await Promise.allSettled(containers.map((container) => container.stop({ timeout: 10_000 })));
      await network?.stop().catch(() => undefined);
      releasePorts(ports);
    })());

  const startContainer = async (container: InstanceType<typeof tc.GenericContainer>): Promise<StartedTestContainer> => {
    const started = await container.withStartupTimeout(Math.max(1000, deadline.remainingMillis())).start();
    containers.push(started);
    return started;
  };

  try {
    network = await new tc.Network().start();
    const net = network;
    const pgPorts = await allocatePorts(options.shards * (1 + options.replicasPerShard));
    const redisPorts = await allocatePorts(options.redisStandalone);
    const clusterPorts = await allocatePorts(options.redisClusterMasters, { withBusPort: true });
    ports.push(...pgPorts, ...redisPorts, ...clusterPorts);

    const pgServer = async (name: string, port: number, container: StartedTestContainer, replica: boolean): Promise<DockerServer> => {
      const host = container.getHost();
      const ready = async (d: Deadline): Promise<void> => {
        await waitForPostgres({ host, port }, `PostgreSQL container ${name} on ${host}:${port}`, d);
        if (replica) await waitForStreaming({ host, port }, `replica container ${name}`, d);
      };
      await ready(deadline);
      return new DockerServer(name, `postgres://postgres@${host}:${port}/postgres`, port, container, ready, options.startTimeoutMillis);
    };

    const hba = [{ content: PG_HBA, target: HBA_PATH, mode: 0o644 }];
    const perShard = 1 + options.replicasPerShard;
    const primaries = await Promise.all(
      Array.from({ length: options.shards }, async (_, s) => {
        const name = `shard${s}-primary`;
        const port = pgPorts[s * perShard] as number;
        const container = await startContainer(
          new tc.GenericContainer(PG_IMAGE)
            .withNetwork(net)
            .withNetworkAliases(name)
            .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
            .withCopyContentToContainer(hba)
            .withCommand(['postgres', ...PG_SETTINGS])
            .withExposedPorts({ container: 5432, host: port })
            .withWaitStrategy(tc.Wait.forListeningPorts()),
        );
        return pgServer(name, port, container, false);
      }),
    );
    const shards: TestShard[] = await Promise.all(
      primaries.map(async (primary, s) => {
        const replicas = await Promise.all(
          Array.from({ length: options.replicasPerShard }, async (_, r) => {
            const name = `shard${s}-replica${r + 1}`;
            const port = pgPorts[s * perShard + r + 1] as number;
            const container = await startContainer(
              new tc.GenericContainer(PG_IMAGE)
                .withNetwork(net)
                .withUser('postgres')
                .withCopyContentToContainer(hba)
                .withEntrypoint(['bash', '-c', REPLICA_SCRIPT, 'kysely-scale-replica'])
                .withCommand([`shard${s}-primary`, name, ...PG_SETTINGS])
                .withExposedPorts({ container: 5432, host: port })
                .withWaitStrategy(tc.Wait.forListeningPorts()),
            );
            return pgServer(name, port, container, true);
          }),
        );
        return Object.freeze({ id: `shard${s}`, primary, replicas: Object.freeze(replicas) });
      }),
    );

    const redis = await Promise.all(
      redisPorts.map(async (port, i) => {
        const container = await startContainer(
          new tc.GenericContainer(REDIS_IMAGE)
            .withCommand([
              'redis-server', '--port', String(port), '--save', '', '--appendonly', 'no',
              '--protected-mode', 'no', '--shutdown-on-sigterm', 'save',
            ])
            .withExposedPorts({ container: port, host: port }),
        );
        const host = container.getHost();
        const ready = (d: Deadline): Promise<void> => waitForRedis({ host, port }, `Redis container redis${i} on ${host}:${port}`, d);
        await ready(deadline);
        return new DockerServer(`redis${i}`, `redis://${host}:${port}`, port, container, ready, options.startTimeoutMillis);
      }),
    );

    // All cluster masters run in one container on their host port numbers, so the addresses
    // they announce to each other (127.0.0.1:port) are also right for clients on this machine.
    let clusterNodes: { host: string; port: number }[] = [];
    if (clusterPorts.length > 0) {
      const script =
        clusterPorts
          .map(
            (port) =>
              `redis-server --port ${port} --cluster-enabled yes --cluster-config-file nodes-${port}.conf ` +
              `--cluster-node-timeout 2000 --save '' --appendonly no --protected-mode no --daemonize yes --logfile /data/redis-${port}.log`,
          )
          .join(' && ') + ' && exec sleep infinity';
      const container = await startContainer(
        new tc.GenericContainer(REDIS_IMAGE)
          .withEntrypoint(['sh', '-c', script])
          .withExposedPorts(...clusterPorts.map((port) => ({ container: port, host: port }))),
      );
      const host = container.getHost();
      clusterNodes = clusterPorts.map((port) => ({ host, port }));
      await Promise.all(clusterNodes.map((node, i) => waitForRedis(node, `Redis Cluster node ${i} on ${host}:${node.port}`, deadline)));
      await formRedisCluster(clusterNodes, deadline, '127.0.0.1');
    }

    return Object.freeze({
      backend: 'docker' as const,
      shards: Object.freeze(shards),
      redis: Object.freeze(redis),
      redisClusterNodes: Object.freeze(clusterNodes.map((node) => Object.freeze(node))),
      createDatabase: (name: string) => createDatabaseOnShards(shards, name, replayTimeoutMillis(options)),
      stop,
    });
  } catch (error) {
    await stop();
    if (error instanceof Error && 'code' in error && error.code === 'E_TEST_CLUSTER') throw error;
    throw testClusterError(`The Docker test cluster failed to start: ${(error as Error).message}`, { backend: 'docker' }, error);
  }
}
