import { execFile } from 'node:child_process';
import { chown, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { testClusterError } from './cluster-wait';

const run = promisify(execFile);

/** The OS user PostgreSQL runs as: empty (the current user) unless we are root. */
export interface ProcessOwner {
  readonly uid?: number;
  readonly gid?: number;
  /** For messages and template keys. */
  readonly label: string;
}

let cached: Promise<ProcessOwner> | undefined;

/**
 * PostgreSQL refuses to run as root, so as root its processes run as the `postgres` user
 * (which every PostgreSQL package creates). Anyone else runs it as themselves.
 */
export function resolvePgOwner(): Promise<ProcessOwner> {
  cached ??= (async (): Promise<ProcessOwner> => {
    const uid = process.getuid?.();
    if (uid !== 0) return Object.freeze({ label: `uid${uid ?? 'unknown'}` });
    try {
      const [u, g] = await Promise.all([
        run('id', ['-u', 'postgres'], { timeout: 5000 }),
        run('id', ['-g', 'postgres'], { timeout: 5000 }),
      ]);
      const pgUid = Number(u.stdout.trim());
      const pgGid = Number(g.stdout.trim());
      if (!Number.isInteger(pgUid) || !Number.isInteger(pgGid)) throw new Error(`unexpected id output: ${u.stdout}`);
      return Object.freeze({ uid: pgUid, gid: pgGid, label: `uid${pgUid}` });
    } catch (error) {
      cached = undefined;
      throw testClusterError(
        'startTestCluster runs as root, and PostgreSQL refuses to run as root, so it runs its servers as the ' +
          '`postgres` user, which does not exist here. Create it (`useradd --system --user-group postgres`) ' +
          'or run the tests as a regular user.',
        {},
        error,
      );
    }
  })();
  return cached;
}

/** Gives `path` to the owner (no-op unless we run as root for another user). */
export async function giveTo(owner: ProcessOwner, path: string): Promise<void> {
  if (owner.uid !== undefined && owner.gid !== undefined) await chown(path, owner.uid, owner.gid);
}

/** Writes a file that the owner's processes may read and rewrite. */
export async function writeOwnedFile(owner: ProcessOwner, path: string, content: string, mode = 0o600): Promise<void> {
  await writeFile(path, content, { mode });
  await giveTo(owner, path);
}

/** Runs a short command as the owner and fails with its output. */
export async function runAs(owner: ProcessOwner, file: string, args: readonly string[], timeoutMillis: number): Promise<string> {
  try {
    const { stdout } = await run(file, [...args], {
      uid: owner.uid,
      gid: owner.gid,
      timeout: Math.max(1, Math.ceil(timeoutMillis)),
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
      cwd: '/',
      encoding: 'utf8',
      maxBuffer: 4 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; killed?: boolean; signal?: string | null };
    const command = `\`${file} ${args.join(' ')}\``;
    if (e.killed === true && e.signal !== null) {
      throw testClusterError(
        `${command} did not finish within the start timeout (${Math.ceil(timeoutMillis)} ms left). ` +
          'Raise `startTimeoutMillis` if this machine is slow.',
        {},
        error,
      );
    }
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    throw testClusterError(`${command} failed as ${owner.label}:\n${output}`, {}, error);
  }
}
