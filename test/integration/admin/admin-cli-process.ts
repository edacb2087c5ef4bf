/** Runs `kysely-scale-admin` as operators run it: a separate process (from the sources, through tsx). */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const repoRoot = resolve(__dirname, '../../..');
const cli = resolve(repoRoot, 'src/admin/cli/admin-cli.ts');

/** A password for URLs (trust authentication ignores it) that the CLI must never print. */
export const SECRET = 'Sup3rSecret';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `url` with {@link SECRET} as its password. */
export function withPassword(url: string): string {
  const parsed = new URL(url);
  parsed.password = SECRET;
  return parsed.toString();
}

export function admin(...args: string[]): Promise<CliRun> {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((done) => child.on('exit', (code) => done({ code, stdout, stderr })));
}
