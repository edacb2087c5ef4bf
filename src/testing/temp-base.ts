import { constants } from 'node:fs';
import { access, stat, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { ConfigError } from '../kernel/errors';

const RAM_DIR = '/dev/shm';
// A cluster of 4 servers takes ~120 MB; container runtimes often give /dev/shm only 64 MB.
const MIN_FREE_BYTES = 1024 ** 3;

async function isWritableFolder(path: string): Promise<boolean> {
  try {
    await access(path, constants.W_OK | constants.X_OK);
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The folder that holds cluster folders and the initdb template: the caller's choice, else a
 * RAM-backed `/dev/shm` with room to spare, else `os.tmpdir()`. Copying data folders dominates
 * a local start, and on a busy disk it is many times slower than in RAM.
 */
export async function chooseBaseTempDir(requested: string | undefined): Promise<string> {
  if (requested !== undefined) {
    if (!(await isWritableFolder(requested))) {
      throw new ConfigError('baseTempDir', `must be an existing folder we can write to, got ${requested}`);
    }
    return requested;
  }
  if (process.platform === 'linux' && (await isWritableFolder(RAM_DIR))) {
    try {
      const fs = await statfs(RAM_DIR);
      if (fs.bavail * fs.bsize >= MIN_FREE_BYTES) return RAM_DIR;
    } catch {
      // statfs unsupported: use the ordinary temp folder.
    }
  }
  return tmpdir();
}
