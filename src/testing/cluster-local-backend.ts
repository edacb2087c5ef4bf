import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Deadline } from './cluster-wait';
import { createDatabaseOnShards } from './cluster-databases';
import type { ResolvedTestClusterOptions } from './cluster-options';
import { findLocalBinaries } from './local-binaries';
import { LocalPgServer } from './pg-local-server';
import { ensurePgTemplate } from './pg-template';
import { allocatePorts, releasePorts } from './port-allocator';
import { giveTo, resolvePgOwner, type ProcessOwner } from './process-owner';
import { registerReapable, startWatchdog, unregisterReapable } from './process-reaper';
import { formRedisCluster } from './redis-cluster-setup';
import { LocalRedisServer } from './redis-local-server';
import type { TestCluster, TestShard } from './test-cluster-types';

const NOBODY_SPECIAL: ProcessOwner = Object.freeze({ label: 'current user' });

async function makeDir(path: string, owner: ProcessOwner): Promise<string> {
  await mkdir(path, { mode: 0o700 });
  await giveTo(owner, path);
  return path;
}

/**
 * Starts the cluster as local processes in one temp folder (`kysely-scale-cluster-XXXXXX`):
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
  const owner = needPg ? await resolvePgOwner() : NOBODY_SPECIAL;
  // Start building (or find) the initdb template while the folders and ports are prepared.
  const template = bins.pg === undefined ? undefined : ensurePgTemplate(bins.pg, owner, deadline);
  template?.catch(() => undefined); // awaited below; avoid an unhandled rejection meanwhile

  const root = await mkdtemp(join(tmpdir(), 'kysely-scale-cluster-'));
  await giveTo(owner, root);
  const pids = await makeDir(join(root, 'pids'), NOBODY_SPECIAL);
  const watchdog = startWatchdog(root, pids);
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
      watchdog.stop();
      await rm(root, { recursive: true, force: true, maxRetries: 3 });
      releasePorts(everyServer().map((server) => server.port));
      unregisterReapable(reapable);
    })());

  try {
    const shards: TestShard[] = [];
    const pgPorts = await allocatePorts(options.shards * (1 + options.replicasPerShard));
    const redisPorts = await allocatePorts(options.redisStandalone);
    const clusterPorts = await allocatePorts(options.redisClusterMasters, { withBusPort: true });
    if (bins.pg !== undefined) {
      for (let s = 0; s < options.shards; s += 1) {
        const members: LocalPgServer[] = [];
        for (let r = 0; r <= options.replicasPerShard; r += 1) {
          const name = r === 0 ? `shard${s}-primary` : `shard${s}-replica${r}`;
          members.push(
            new LocalPgServer({
              name,
              dir: await makeDir(join(root, name), owner),
              port: pgPorts[s * (1 + options.replicasPerShard) + r] as number,
              primaryPort: r === 0 ? undefined : members[0]?.port,
              bin: bins.pg,
              owner,
              pidFile: join(pids, name),
              startTimeoutMillis: options.startTimeoutMillis,
            }),
          );
        }
        const [primary, ...replicas] = members as [LocalPgServer, ...LocalPgServer[]];
        pgServers.push(...members);
        shards.push(Object.freeze({ id: `shard${s}`, primary, replicas: Object.freeze(replicas) }));
      }
    }
    if (bins.redis !== undefined) {
      const redisBin = bins.redis;
      const makeRedis = async (name: string, port: number, clusterNode: boolean): Promise<LocalRedisServer> =>
        new LocalRedisServer({
          name,
          dir: await makeDir(join(root, name), NOBODY_SPECIAL),
          port,
          clusterNode,
          bin: redisBin,
          pidFile: join(pids, name),
          startTimeoutMillis: options.startTimeoutMillis,
        });
      for (const [i, port] of redisPorts.entries()) redisServers.push(await makeRedis(`redis${i}`, port, false));
      for (const [i, port] of clusterPorts.entries()) clusterNodes.push(await makeRedis(`redis-cluster${i}`, port, true));
    }

    if (template !== undefined) {
      const templateDir = await template;
      await Promise.all(pgServers.map((server) => server.prepare(templateDir, deadline)));
    }
    // Everything starts at once; replicas retry their primary until it is up.
    const started = await Promise.allSettled([
      ...pgServers.map((server) => server.startWithin(deadline, { streaming: true })),
      ...[...redisServers, ...clusterNodes].map((server) => server.startWithin(deadline)),
    ]);
    const failure = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
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
      createDatabase: (name: string) => createDatabaseOnShards(shards, name, options.startTimeoutMillis),
      stop,
    });
  } catch (error) {
    await stop();
    throw error;
  }
}
