import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Deadline } from './cluster-wait';
import type { PgBinaries } from './local-binaries';
import { giveTo, runAs, writeOwnedFile, type ProcessOwner } from './process-owner';

// Bump when the template's contents change, so stale templates of older versions are not reused.
const TEMPLATE_FORMAT = 1;

/**
 * Trust authentication, loopback only: tests need no passwords, and nothing else can connect
 * (the servers also listen on 127.0.0.1 only and have no Unix socket).
 */
const PG_HBA = `# kysely-scale test cluster: trust on loopback only.
host    all            all    127.0.0.1/32    trust
host    replication    all    127.0.0.1/32    trust
`;

const pending = new Map<string, Promise<string>>();

function isComplete(dir: string): boolean {
  return existsSync(join(dir, 'PG_VERSION')) && existsSync(join(dir, 'global', 'pg_control'));
}

/**
 * Returns a freshly initialised, cleanly shut down data folder to copy for every server.
 *
 * `initdb` is the slowest part of a start, so it runs once per machine, PostgreSQL version and
 * owner; the result is kept in `baseDir` (the folder that holds the clusters' folders). It is built in a private folder and renamed into
 * place, which is atomic: when parallel test workers race, one rename wins and the others
 * discard their copy.
 */
export function ensurePgTemplate(bin: PgBinaries, owner: ProcessOwner, baseDir: string, deadline: Deadline): Promise<string> {
  const key = createHash('sha256')
    .update(`${TEMPLATE_FORMAT}\n${bin.binDir}\n${bin.version}\n${owner.label}`)
    .digest('hex')
    .slice(0, 12);
  const target = join(baseDir, `kysely-scale-pg${bin.major}-template-${key}`);
  let promise = pending.get(target);
  if (promise === undefined) {
    promise = buildTemplate(bin, owner, baseDir, target, deadline);
    pending.set(target, promise);
    promise.catch(() => pending.delete(target));
  }
  return promise;
}

async function buildTemplate(
  bin: PgBinaries,
  owner: ProcessOwner,
  baseDir: string,
  target: string,
  deadline: Deadline,
): Promise<string> {
  if (isComplete(target)) return target;
  // Damaged (e.g. by a temp-folder cleaner): rebuild it. A complete template is never removed.
  if (existsSync(target)) await rm(target, { recursive: true, force: true });
  const staging = await mkdtemp(join(baseDir, 'kysely-scale-initdb-'));
  try {
    await giveTo(owner, staging);
    const data = join(staging, 'data');
    await runAs(
      owner,
      bin.initdb,
      [
        '-D', data,
        '-U', 'postgres',
        '--auth=trust',
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync', // test data: durability is not needed, speed is
        '--no-instructions',
        '--wal-segsize=1', // 1 MB WAL segments instead of 16: smaller copies per server
      ],
      deadline.remainingMillis(),
    );
    await writeOwnedFile(owner, join(data, 'pg_hba.conf'), PG_HBA);
    try {
      await rename(data, target);
    } catch (error) {
      // Another worker finished first: use theirs.
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'EEXIST' && code !== 'ENOTEMPTY') || !isComplete(target)) throw error;
    }
    return target;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
