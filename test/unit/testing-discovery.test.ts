import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes } from '../../src/kernel/errors';
import { TEST_CLUSTER_DEFAULTS } from '../../src/testing';
import { resolveTestClusterOptions } from '../../src/testing/cluster-options';
import { probeDocker } from '../../src/testing/docker-probe';
import { findLocalBinaries, findPgBinDir, type BinarySearchPlaces } from '../../src/testing/local-binaries';

let root: string;

function executable(path: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, '#!/bin/sh\n');
  chmodSync(path, 0o755);
}

function serverBinaries(dir: string): string {
  executable(join(dir, 'initdb'));
  executable(join(dir, 'postgres'));
  return dir;
}

function places(overrides: Partial<BinarySearchPlaces> = {}): BinarySearchPlaces {
  return { pathDirs: [], pgConfigBinDir: () => undefined, versionedRoot: join(root, 'none'), ...overrides };
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'kysely-scale-discovery-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('PostgreSQL binary discovery', () => {
  test('PATH first, following a symlinked initdb to the folder that also holds postgres', () => {
    const real = serverBinaries(join(root, 'pg', 'bin'));
    mkdirSync(join(root, 'usr-bin'));
    symlinkSync(join(real, 'initdb'), join(root, 'usr-bin', 'initdb'));
    expect(findPgBinDir(places({ pathDirs: [join(root, 'empty'), join(root, 'usr-bin')] }))).toBe(real);
  });

  test('then pg_config --bindir, then the highest version under /usr/lib/postgresql', () => {
    const fromPgConfig = serverBinaries(join(root, 'cfg', 'bin'));
    const versioned = join(root, 'usr-lib-postgresql');
    serverBinaries(join(versioned, '13', 'bin'));
    serverBinaries(join(versioned, '16', 'bin'));
    mkdirSync(join(versioned, 'not-a-version'));
    expect(findPgBinDir(places({ pgConfigBinDir: () => fromPgConfig, versionedRoot: versioned }))).toBe(fromPgConfig);
    expect(findPgBinDir(places({ versionedRoot: versioned }))).toBe(join(versioned, '16', 'bin'));
  });

  test('a folder with initdb but no postgres does not count', () => {
    executable(join(root, 'client-only', 'initdb'));
    expect(findPgBinDir(places({ pathDirs: [join(root, 'client-only')] }))).toBeUndefined();
  });

  test('nothing found: E_TEST_CLUSTER naming what to install', async () => {
    const error = await findLocalBinaries({ postgres: true, redis: true }, 'No Docker engine answered.', places()).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCodes.TEST_CLUSTER });
    const message = (error as Error).message;
    expect(message).toContain('apt-get install postgresql redis-server');
    expect(message).toContain('brew install postgresql@15 redis');
    expect(message).toContain('initdb');
    expect(message).toContain('No Docker engine answered.');
  });

  test('only what was requested is required', async () => {
    const error = await findLocalBinaries({ postgres: false, redis: true }, '', places()).catch((e: unknown) => e);
    expect((error as Error).message).toContain('apt-get install redis-server');
    expect((error as Error).message).not.toContain('postgresql');
  });
});

describe('options', () => {
  test('defaults', () => {
    expect(resolveTestClusterOptions()).toEqual({
      shards: 2,
      replicasPerShard: 0,
      redisStandalone: 0,
      redisClusterMasters: 0,
      backend: 'auto',
      dockerProbeTimeoutMillis: 1500,
      startTimeoutMillis: 60_000,
    });
    expect(resolveTestClusterOptions({ redis: true })).toMatchObject({ redisStandalone: 1, redisClusterMasters: 0 });
    expect(resolveTestClusterOptions({ redis: { clusterMasters: 3 } })).toMatchObject({ redisStandalone: 1, redisClusterMasters: 3 });
    expect(Object.isFrozen(TEST_CLUSTER_DEFAULTS)).toBe(true);
  });

  test.each([
    [{ shards: -1 }, 'shards'],
    [{ replicasPerShard: 1.5 }, 'replicasPerShard'],
    [{ redis: { clusterMasters: 100 } }, 'redis.clusterMasters'],
    [{ backend: 'podman' }, 'backend'],
    [{ startTimeoutMillis: 0 }, 'startTimeoutMillis'],
    [{ baseTempDir: 'relative/dir' }, 'baseTempDir'],
    // A misspelt option is refused, not ignored (it would start a default cluster).
    [{ shard: 2 }, 'shard'],
    [{ redis: { masters: 3 } }, 'redis.masters'],
  ])('%j is refused naming %s', (options, option) => {
    expect(() => resolveTestClusterOptions(options as never)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_CONFIG, context: { option } }));
  });
});

test('the Docker probe gives up within its timeout when nothing answers', async () => {
  const started = Date.now();
  const endpoint = await probeDocker(300, { DOCKER_HOST: `unix://${join(root, 'no.sock')}`, XDG_RUNTIME_DIR: root });
  if (endpoint === undefined) expect(Date.now() - started).toBeLessThan(2000);
  else expect(endpoint.kind).toBe('socket'); // a machine with a real engine answers on its usual socket
});
