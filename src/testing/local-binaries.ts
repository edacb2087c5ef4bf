import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants, readdirSync, realpathSync, statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { testClusterError } from './cluster-wait';
import { TESTCONTAINERS_INSTALL } from './testcontainers-peer';

const run = promisify(execFile);

/** PostgreSQL server binaries of one installation. */
export interface PgBinaries {
  readonly binDir: string;
  readonly initdb: string;
  readonly postgres: string;
  /** `postgres --version` output, e.g. `postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)`. */
  readonly version: string;
  readonly major: number;
}

/** The redis-server binary. */
export interface RedisBinaries {
  readonly redisServer: string;
  readonly version: string;
  readonly major: number;
}

/** Where to look, so discovery can be tested with a fake file tree. */
export interface BinarySearchPlaces {
  /** Folders of PATH, in order. */
  readonly pathDirs: readonly string[];
  /** Output of `pg_config --bindir` (computed lazily: it runs a process). */
  readonly pgConfigBinDir: () => string | undefined;
  /** Parent of Debian/Ubuntu's versioned folders (`/usr/lib/postgresql/<major>/bin`). */
  readonly versionedRoot: string;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The first `name` on `pathDirs` that is an executable file. */
export function findOnPath(name: string, pathDirs: readonly string[]): string | undefined {
  for (const dir of pathDirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function hasServerBinaries(dir: string): boolean {
  return isExecutable(join(dir, 'initdb')) && isExecutable(join(dir, 'postgres'));
}

/**
 * Finds the folder holding `initdb` and `postgres`: on PATH (symlinks resolved, because Debian
 * links a few tools into /usr/bin or /usr/local/bin while `initdb` needs `postgres` beside it),
 * then `pg_config --bindir`, then the highest version under `versionedRoot`.
 */
export function findPgBinDir(places: BinarySearchPlaces): string | undefined {
  const initdb = findOnPath('initdb', places.pathDirs);
  if (initdb !== undefined) {
    const dir = dirname(realpathSync(initdb));
    if (hasServerBinaries(dir)) return dir;
  }
  const fromPgConfig = places.pgConfigBinDir();
  if (fromPgConfig !== undefined && hasServerBinaries(fromPgConfig)) return fromPgConfig;
  let versions: string[] = [];
  try {
    versions = readdirSync(places.versionedRoot).filter((v) => /^\d+(\.\d+)?$/.test(v));
  } catch {
    // No such folder: not a Debian-style installation.
  }
  versions.sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const dir = join(places.versionedRoot, version, 'bin');
    if (hasServerBinaries(dir)) return dir;
  }
  return undefined;
}

/** The places of this machine. */
export function defaultSearchPlaces(): BinarySearchPlaces {
  return {
    pathDirs: (process.env['PATH'] ?? '').split(delimiter),
    pgConfigBinDir: () => {
      const pgConfig = findOnPath('pg_config', (process.env['PATH'] ?? '').split(delimiter));
      if (pgConfig === undefined) return undefined;
      try {
        // Synchronous on purpose: it runs only when PATH had no initdb, and answers in milliseconds.
        return execFileSync(pgConfig, ['--bindir'], { encoding: 'utf8', timeout: 5000 }).trim() || undefined;
      } catch {
        return undefined;
      }
    },
    versionedRoot: '/usr/lib/postgresql',
  };
}

/** What to install, by what is missing. Names apt, Homebrew and Docker so anyone can act. */
export function missingBinariesMessage(missing: { postgres: boolean; redis: boolean }, dockerNote: string): string {
  const parts: string[] = [];
  const apt: string[] = [];
  const brew: string[] = [];
  if (missing.postgres) {
    parts.push(
      'PostgreSQL server binaries (initdb, postgres): looked on PATH, in `pg_config --bindir` and under /usr/lib/postgresql/*/bin',
    );
    apt.push('postgresql');
    brew.push('postgresql@15');
  }
  if (missing.redis) {
    parts.push('redis-server: looked on PATH');
    apt.push('redis-server');
    brew.push('redis');
  }
  return (
    `startTestCluster cannot start local servers: not found: ${parts.join('; ')}. ` +
    `Install them (Debian/Ubuntu: \`apt-get install ${apt.join(' ')}\`; macOS: \`brew install ${brew.join(' ')}\`), ` +
    `or start a Docker engine and install the optional peer dependency testcontainers (${TESTCONTAINERS_INSTALL}) so containers can be used. ${dockerNote}`
  );
}

function majorOf(version: string, pattern: RegExp): number {
  const match = pattern.exec(version);
  return match?.[1] === undefined ? 0 : Number(match[1]);
}

/** Reads the PostgreSQL version of an installation folder. */
export async function describePgBinaries(binDir: string): Promise<PgBinaries> {
  const postgres = join(binDir, 'postgres');
  const { stdout } = await run(postgres, ['--version'], { timeout: 10_000 });
  const version = stdout.trim();
  return Object.freeze({
    binDir,
    initdb: join(binDir, 'initdb'),
    postgres,
    version,
    major: majorOf(version, /PostgreSQL\)?\s+(\d+)/),
  });
}

/** Reads the version of a redis-server binary. */
export async function describeRedisBinaries(redisServer: string): Promise<RedisBinaries> {
  const { stdout } = await run(redisServer, ['--version'], { timeout: 10_000 });
  const version = stdout.trim();
  return Object.freeze({ redisServer, version, major: majorOf(version, /v=(\d+)/) });
}

/**
 * Finds what a local cluster needs (only the kinds that were requested) or throws an
 * `E_TEST_CLUSTER` error that names what to install.
 */
export async function findLocalBinaries(
  need: { postgres: boolean; redis: boolean },
  dockerNote: string,
  places: BinarySearchPlaces = defaultSearchPlaces(),
): Promise<{ pg: PgBinaries | undefined; redis: RedisBinaries | undefined }> {
  const pgDir = need.postgres ? findPgBinDir(places) : undefined;
  const redisServer = need.redis ? findOnPath('redis-server', places.pathDirs) : undefined;
  const missing = { postgres: need.postgres && pgDir === undefined, redis: need.redis && redisServer === undefined };
  if (missing.postgres || missing.redis) {
    throw testClusterError(missingBinariesMessage(missing, dockerNote), { missing });
  }
  const [pg, redis] = await Promise.all([
    pgDir === undefined ? undefined : describePgBinaries(pgDir),
    redisServer === undefined ? undefined : describeRedisBinaries(redisServer),
  ]);
  return { pg, redis };
}
