import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadProxyConfig } from '../../../src/balancer/http/proxy-config';

// `kysely-scale-proxy -h` and `--version` answer and exit 0, as `kysely-scale-admin` does.
const root = join(__dirname, '../../..');
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

function proxyCli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'src/balancer/http/proxy-cli.ts'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

describe('kysely-scale-proxy -h, --help, --version', () => {
  test('the loader reads them before anything else (no upstream needed)', async () => {
    await expect(loadProxyConfig(['-h'])).resolves.toBe('help');
    await expect(loadProxyConfig(['--help'])).resolves.toBe('help');
    await expect(loadProxyConfig(['--version'])).resolves.toBe('version');
    await expect(loadProxyConfig(['--version', '--upstream', 'http://a:1'])).resolves.toBe('version');
  });

  test('-h prints the usage and --version the package version, exit 0', async () => {
    const [short, long, ver] = await Promise.all([proxyCli('-h'), proxyCli('--help'), proxyCli('--version')]);
    expect(short).toMatchObject({ code: 0, stderr: '' });
    expect(short.stdout).toMatch(/^Usage: kysely-scale-proxy/);
    expect(short.stdout).toContain('-h, --help');
    expect(long.stdout).toBe(short.stdout);
    expect(ver).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
  }, 30_000);

  test('an unknown flag is still a usage error (exit 2)', async () => {
    const bogus = await proxyCli('--bogus');
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toContain("Unknown option '--bogus'");
  }, 30_000);
});
