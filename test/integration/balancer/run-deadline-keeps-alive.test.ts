/**
 * A process whose only pending work is `Balancer.run()` of a function that waits on nothing
 * holding the event loop stays alive until the call's deadline: it prints the coded timeout and
 * exits 0 on its own. Before, the deadline's only handle was an unref'd timer and the process
 * exited in the middle of the await (code 13, "unsettled top-level await"), skipping its error
 * handling. Found by an outside-in test of the packed library.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';

test("a run() whose function hangs on nothing keeps the process alive until its deadline rejects it", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kysely-scale-run-alive-'));
  const script = join(dir, 'run-hangs.ts');
  writeFileSync(
    script,
    `import { Balancer } from ${JSON.stringify(resolve(__dirname, '../../../src/balancer/balancer'))};
const balancer = new Balancer({ instances: [{ id: 'a', address: 'x' }] });
void (async () => {
  const started = performance.now();
  const error = await balancer.run(() => new Promise<never>(() => undefined), { timeoutMillis: 300 }).catch((e: { code?: string }) => e);
  process.stdout.write(JSON.stringify({ code: (error as { code?: string }).code, tookAtLeast300: performance.now() - started >= 299 }) + '\\n');
})();
`,
  );
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: resolve(__dirname, '../../..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await new Promise<number | null>((done) => child.on('close', done));
    clearTimeout(timer);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(stdout)).toEqual({ code: 'E_REQUEST_TIMEOUT', tookAtLeast300: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 40_000);
