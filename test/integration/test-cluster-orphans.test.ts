import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { alive } from '../support/process-alive';

// A test process that dies without calling stop() must leave no server and no folder behind:
// the signal handlers cover SIGTERM, the detached watchdog covers SIGKILL.

const repoRoot = resolve(__dirname, '../..');
let scriptDir: string;
let script: string;

beforeAll(() => {
  scriptDir = mkdtempSync(join(tmpdir(), 'kysely-scale-orphan-test-'));
  script = join(scriptDir, 'start-and-hang.ts');
  writeFileSync(
    script,
    `import { startTestCluster } from ${JSON.stringify(join(repoRoot, 'src/testing/index'))};
void startTestCluster({ shards: 1, replicasPerShard: 1, redis: true, backend: 'local' }).then((c) => {
  const servers = [...c.shards.flatMap((s) => [s.primary, ...s.replicas]), ...c.redis];
  process.stdout.write(JSON.stringify({ tempDir: c.tempDir, pids: servers.map((s) => s.pid) }) + '\\n');
  setInterval(() => undefined, 1000); // hang until killed
});
`,
  );
});

afterAll(() => rmSync(scriptDir, { recursive: true, force: true }));


/** Starts a child process that starts a cluster and hangs; resolves with what it reported. */
function startChild(): Promise<{ pid: number; kill: (signal: NodeJS.Signals) => void; tempDir: string; pids: number[] }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolvePromise, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const line = stdout.split('\n')[0];
      if (stdout.includes('\n') && line !== undefined) {
        const report = JSON.parse(line) as { tempDir: string; pids: number[] };
        resolvePromise({ pid: child.pid!, kill: (signal) => child.kill(signal), ...report });
      }
    });
    child.once('exit', (code) => reject(new Error(`child exited early (${code}): ${stderr}`)));
  });
}

async function expectCleanedUp(report: { tempDir: string; pids: number[] }): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < 20_000) {
    if (report.pids.every((pid) => !alive(pid)) && !existsSync(report.tempDir)) return Date.now() - started;
    await delay(50);
  }
  throw new Error(`left behind: pids ${report.pids.filter(alive).join(', ')}; folder exists: ${existsSync(report.tempDir)}`);
}

test.each(['SIGKILL', 'SIGTERM'] as const)('a test process ended by %s leaves no server or folder behind', async (signal) => {
  const child = await startChild();
  expect(child.pids).toHaveLength(3);
  expect(child.pids.every(alive)).toBe(true);
  expect(existsSync(child.tempDir)).toBe(true);
  child.kill(signal);
  const millis = await expectCleanedUp(child);
  // eslint-disable-next-line no-console
  console.log(`${signal}: servers gone and folder removed ${millis} ms after the kill`);
});
