import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Deadline } from './cluster-wait';
import { createDatabaseOnShards, replayTimeoutMillis } from './cluster-databases';
import type { ResolvedTestClusterOptions } from './cluster-options';
import { findLocalBinaries } from './local-binaries';
import { LocalPgServer, preparePgDataDir } from './pg-local-server';
import { ensurePgTemplate } from './pg-template';
import { allocatePorts, releasePorts } from './port-allocator';
import { giveTo, resolvePgOwner, type ProcessOwner } from './process-owner';
import { registerReapable, startWatchdog, unregisterReapable, type Watchdog } from './process-reaper';
import { formRedisCluster } from './redis-cluster-setup';
import { LocalRedisServer } from './redis-local-server';
import { chooseBaseTempDir } from './temp-base';
import type { TestCluster, TestShard } from './test-cluster-types';

const CURRENT_USER: ProcessOwner = Object.freeze({ label: 'current user' });
const PORT_ATTEMPTS = 3;

async function makeDir(path: string, owner: ProcessOwner): Promise<string> {
  await mkdir(path, { mode: 0o700 });
  await giveTo(owner, path);
  return path;
}

/**
 * Starts the cluster as local processes in one temp folder (`<base>/kysely-scale-cluster-XXXXXX`):
 * a folder per server with its data and `server.log`, and `pids/` for the watchdog.
 * On any failure everything started so far is stopped and the folder removed.
 */
export async function startLocalCluster(
  options: ResolvedTestClusterOptions,
  deadline: Deadline,
  dockerNote: string,
): Promise<TestCluster> {
  const needPg = options.shards > 0;
  const needRedis = options.redisStandalone + options.redisClusterMasters > 0;
  const bins = await findLocalBinaries({ postgres: needPg, redis: needRedis }, dockerNote);
  const owner = needPg ? await resolvePgOwner() : CURRENT_USER;
  const baseDir = await chooseBaseTempDir(options.baseTempDir);
  // Start building (or find) the initdb template while the folders are prepared.
  const template = bins.pg === undefined ? undefined : ensurePgTemplate(bins.pg, owner, baseDir, deadline);
  template?.catch(() => undefined); // awaited below; avoid an unhandled rejection meanwhile

  const root = await mkdtemp(join(baseDir, 'kysely-scale-cluster-'));
  const pids = join(root, 'pids');
  let watchdog: Watchdog | undefined;
  const pgServers: LocalPgServer[] = [];
  const redisServers: LocalRedisServer[] = [];
  const clusterNodes: LocalRedisServer[] = [];
  const everyServer = (): (LocalPgServer | LocalRedisServer)[] => [...pgServers, ...redisServers, ...clusterNodes];
  const reapable = { killNow: () => everyServer().forEach((server) => server.killNow()) };
  registerReapable(reapable);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await Promise.allSettled(everyServer().map((server) => server.stop()));
      watchdog?.stop();
      await rm(root, { recursive: true, force: true, maxRetries: 3 });
      releasePorts(everyServer().map((server) => server.port));
      unregisterReapable(reapable);
    })());

  try {
    await giveTo(owner, root);
    await makeDir(pids, CURRENT_USER);
    watchdog = startWatchdog(root, pids);
    // Folders first (named by role, not port), so ports are taken only just before the servers bind them.
    const pgNames: { name: string; shard: number; replica: boolean }[] = [];
    for (let s = 0; s < options.shards; s += 1) {
      for (let r = 0; r <= options.replicasPerShard; r += 1) {
        pgNames.push({ name: r === 0 ? `shard${s}-primary` : `shard${s}-replica${r}`, shard: s, replica: r > 0 });
      }
    }
    const redisNames = Array.from({ length: options.redisStandalone }, (_, i) => `redis${i}`);
    const clusterNames = Array.from({ length: options.redisClusterMasters }, (_, i) => `redis-cluster${i}`);
    for (const { name } of pgNames) await makeDir(join(root, name), owner);
    for (const name of [...redisNames, ...clusterNames]) await makeDir(join(root, name), CURRENT_USER);
    if (template !== undefined) {
      const templateDir = await template;
      await Promise.all(pgNames.map(({ name, replica }) => preparePgDataDir(owner, templateDir, join(root, name), replica, deadline)));
    }

    let shards: TestShard[] = [];
    for (let attempt = 1; ; attempt += 1) {
      const pgPorts = await allocatePorts(pgNames.length);
      const redisPorts = await allocatePorts(redisNames.length);
      const clusterPorts = await allocatePorts(clusterNames.length, { withBusPort: true });
      shards = [];
      if (bins.pg !== undefined) {
        const pgBin = bins.pg;
        const byShard = new Map<number, LocalPgServer[]>();
        for (const [i, { name, shard, replica }] of pgNames.entries()) {
          const members = byShard.get(shard) ?? [];
          byShard.set(shard, members);
          members.push(
            new LocalPgServer({
              name,
              dir: join(root, name),
              port: pgPorts[i] as number,
              primaryPort: replica ? members[0]?.port : undefined,
              bin: pgBin,
              owner,
              pidFile: join(pids, name),
              startTimeoutMillis: options.startTimeoutMillis,
            }),
          );
        }
        for (const [s, members] of byShard) {
          const [primary, ...replicas] = members as [LocalPgServer, ...LocalPgServer[]];
          pgServers.push(...members);
          shards.push(Object.freeze({ id: `shard${s}`, primary, replicas: Object.freeze(replicas) }));
        }
      }
      if (bins.redis !== undefined) {
        const redisBin = bins.redis;
        const makeRedis = (name: string, port: number, clusterNode: boolean): LocalRedisServer =>
          new LocalRedisServer({
            name,
            dir: join(root, name),
            port,
            clusterNode,
            bin: redisBin,
            pidFile: join(pids, name),
            startTimeoutMillis: options.startTimeoutMillis,
          });
        redisNames.forEach((name, i) => redisServers.push(makeRedis(name, redisPorts[i] as number, false)));
        clusterNames.forEach((name, i) => clusterNodes.push(makeRedis(name, clusterPorts[i] as number, true)));
      }

      // Everything starts at once; replicas retry their primary until it is up.
      const started = await Promise.allSettled([
        ...pgServers.map((server) => server.startWithin(deadline, { streaming: true })),
        ...[...redisServers, ...clusterNodes].map((server) => server.startWithin(deadline)),
      ]);
      const failure = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failure === undefined) break;
      // Another process may bind a port between our probe and the server's bind: take new ports.
      const portTaken = /address already in use/i.test(String((failure.reason as Error)?.message));
      if (!portTaken || attempt >= PORT_ATTEMPTS) throw failure.reason;
      const servers = everyServer();
      await Promise.allSettled(servers.map((server) => server.stop()));
      releasePorts(servers.map((server) => server.port));
      pgServers.length = 0;
      redisServers.length = 0;
      clusterNodes.length = 0;
      // A cluster node's nodes.conf remembers its old port; start the nodes fresh.
      await Promise.all(clusterNames.map((name) => rm(join(root, name, 'nodes.conf'), { force: true })));
    }
    await formRedisCluster(
      clusterNodes.map((node) => ({ host: '127.0.0.1', port: node.port })),
      deadline,
    );

    return Object.freeze({
      backend: 'local' as const,
      tempDir: root,
      shards: Object.freeze(shards),
      redis: Object.freeze([...redisServers]),
      redisClusterNodes: Object.freeze(clusterNodes.map((node) => Object.freeze({ host: '127.0.0.1', port: node.port }))),
      createDatabase: (name: string) => createDatabaseOnShards(shards, name, replayTimeoutMillis(options)),
      stop,
    });
  } catch (error) {
    await stop();
    throw error;
  }
}
