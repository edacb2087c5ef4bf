/** Runs a TypeScript script in a Node child process of its own (tsx), for tests of what a whole process does (exits, stays alive). */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** How the child ended and what it printed. */
export interface ScriptRun {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** `import … from` text of a module under src/ for the script (absolute, so the script may live anywhere). */
export function srcModule(file: string): string {
  return JSON.stringify(resolve(__dirname, '../../src', file));
}

/** Writes `source` to a temporary file, runs it from the repository root and waits for it to end; killed (SIGKILL) after `killAfterMillis`. */
export async function runTsxScript(source: string, killAfterMillis: number): Promise<ScriptRun> {
  const dir = mkdtempSync(join(tmpdir(), 'kysely-scale-script-'));
  try {
    const script = join(dir, 'script.ts');
    writeFileSync(script, source);
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: resolve(__dirname, '../..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMillis);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((done) => child.on('close', (c, s) => done([c, s])));
    clearTimeout(timer);
    return { stdout, stderr, code, signal };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
