import { isAbsolute } from 'node:path';
import { ConfigError } from '../kernel/errors';
import { requireKnownKeys } from '../kernel/validate';
import type { TestClusterOptions } from './test-cluster-types';

/** The options of {@link TestClusterOptions}, for refusing unknown (misspelt) ones. */
const OPTION_KEYS: readonly (keyof TestClusterOptions)[] = ['shards', 'replicasPerShard', 'redis', 'backend', 'dockerProbeTimeoutMillis', 'startTimeoutMillis', 'baseTempDir'];
const REDIS_KEYS: readonly string[] = ['standalone', 'clusterMasters'];

/** Defaults of {@link TestClusterOptions}, one place for the docs and the code. */
export const TEST_CLUSTER_DEFAULTS = Object.freeze({
  shards: 2,
  replicasPerShard: 0,
  redis: false as boolean,
  /** Standalone servers for `redis: true`, or for a `redis` object without `standalone`. */
  redisStandalone: 1,
  /** Redis Cluster masters for a `redis` object without `clusterMasters`. */
  redisClusterMasters: 0,
  backend: 'auto' as const,
  dockerProbeTimeoutMillis: 1500,
  startTimeoutMillis: 60_000,
});

/** Validated options with every default filled in. */
export interface ResolvedTestClusterOptions {
  readonly shards: number;
  readonly replicasPerShard: number;
  readonly redisStandalone: number;
  readonly redisClusterMasters: number;
  readonly backend: 'auto' | 'docker' | 'local';
  readonly dockerProbeTimeoutMillis: number;
  readonly startTimeoutMillis: number;
  /** Undefined: choose at start (see {@link chooseBaseTempDir}). */
  readonly baseTempDir: string | undefined;
}

// Generous bounds that still catch typos (a 2-core CI machine cannot run 500 servers anyway).
const MAX_SERVERS_PER_KIND = 64;

function count(option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_SERVERS_PER_KIND) {
    throw new ConfigError(option, `must be an integer from 0 to ${MAX_SERVERS_PER_KIND}, got ${String(value)}`);
  }
  return value;
}

function millis(option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(option, `must be a positive number of milliseconds, got ${String(value)}`);
  }
  return value;
}

function folder(option: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !isAbsolute(value)) {
    throw new ConfigError(option, `must be an absolute path of an existing folder, got ${String(value)}`);
  }
  return value;
}

/** Validates `options` (never keeping or mutating the caller's object) and fills in defaults. */
export function resolveTestClusterOptions(options: TestClusterOptions = {}): ResolvedTestClusterOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError('options', 'must be an object');
  }
  requireKnownKeys('', options, OPTION_KEYS);
  const d = TEST_CLUSTER_DEFAULTS;
  const redis = options.redis ?? d.redis;
  let redisStandalone: number;
  let redisClusterMasters: number;
  if (typeof redis === 'boolean') {
    redisStandalone = redis ? d.redisStandalone : 0;
    redisClusterMasters = 0;
  } else if (typeof redis === 'object' && redis !== null) {
    requireKnownKeys('redis', redis, REDIS_KEYS);
    redisStandalone = count('redis.standalone', redis.standalone, d.redisStandalone);
    redisClusterMasters = count('redis.clusterMasters', redis.clusterMasters, d.redisClusterMasters);
  } else {
    throw new ConfigError('redis', `must be a boolean or { standalone, clusterMasters }, got ${String(redis)}`);
  }
  const backend = options.backend ?? d.backend;
  if (backend !== 'auto' && backend !== 'docker' && backend !== 'local') {
    throw new ConfigError('backend', `must be 'auto', 'docker' or 'local', got ${String(backend)}`);
  }
  return Object.freeze({
    shards: count('shards', options.shards, d.shards),
    replicasPerShard: count('replicasPerShard', options.replicasPerShard, d.replicasPerShard),
    redisStandalone,
    redisClusterMasters,
    backend,
    dockerProbeTimeoutMillis: millis('dockerProbeTimeoutMillis', options.dockerProbeTimeoutMillis, d.dockerProbeTimeoutMillis),
    startTimeoutMillis: millis('startTimeoutMillis', options.startTimeoutMillis, d.startTimeoutMillis),
    baseTempDir: folder('baseTempDir', options.baseTempDir),
  });
}
